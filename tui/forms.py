"""The submit form's fields and their validation: what the user typed
becomes a task body checked with ``TaskCreate`` (the model the server
validates with), or a message for each field that is wrong. Pure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from banyan.ids import is_id
from banyan.models import TaskCreate


@dataclass(frozen=True)
class FormField:
    key: str
    label: str
    placeholder: str


FIELDS = (
    FormField("command", "command", "./train.sh --epochs 10  (required)"),
    FormField("name", "name", "optional"),
    FormField("cores", "cores", "1 (default), 0.5, 4"),
    FormField("memory", "memory", '"4 GiB", "512 MiB"'),
    FormField("gpus", "GPUs", "0 (default)"),
    FormField("queue", "queue", "default"),
    FormField("priority", "priority", "0 (higher runs first)"),
    FormField("retries", "retries", "0"),
    FormField("after", "after", "ids it waits for (space separated; short ids too)"),
    FormField("run_when", "runs when", "parents: success (default), finished, failure"),
)
# TaskCreate's locations → the form's fields.
_LOCATIONS = {
    ("command",): "command",
    ("name",): "name",
    ("requested_resources", "cores"): "cores",
    ("requested_resources", "memory"): "memory",
    ("requested_resources", "gpus"): "gpus",
    ("requested_resources",): "cores",
    ("queue",): "queue",
    ("priority",): "priority",
    ("max_retry_count",): "retries",
    ("run_when",): "run_when",
}


@dataclass
class Submission:
    body: dict[str, Any] = field(default_factory=dict)
    after: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _message(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "invalid"))
    return message.removeprefix("Value error, ")


def build_submission(
    values: Mapping[str, str], resolve: Callable[[str], str | None] | None = None
) -> Submission:
    """``values`` by field key → the body to POST and the ids to wait for, or errors.

    ``resolve`` turns a short id into a full one (None: unknown or ambiguous)."""
    out = Submission()
    text = {k: (values.get(k) or "").strip() for k in (f.key for f in FIELDS)}
    body: dict[str, Any] = {"command": text["command"] or None, "state": "available"}
    if not text["command"]:
        out.errors["command"] = "a command is required"
    if text["name"]:
        body["name"] = text["name"]
    wanted: dict[str, Any] = {}
    for key in ("cores", "memory", "gpus"):
        if text[key]:
            wanted[key] = _number(text[key]) if key != "memory" else text[key]
    if wanted:
        body["requested_resources"] = wanted
    if text["queue"]:
        body["queue"] = text["queue"]
    if text["priority"]:
        body["priority"] = _number(text["priority"])
    if text["retries"]:
        body["max_retry_count"] = _number(text["retries"])
    if text["run_when"]:
        body["run_when"] = text["run_when"].lower()
    for word in text["after"].replace(",", " ").split():
        full = word.lower() if is_id(word.lower()) else (resolve(word.lower()) if resolve else None)
        if full is None:
            out.errors["after"] = f"no task {word!r} (24 hex digits, or a short id on screen)"
            break
        out.after.append(full)
    try:
        model = TaskCreate.model_validate(body)
    except ValidationError as exc:
        for error in exc.errors():
            key = _LOCATIONS.get(tuple(str(p) for p in error["loc"]), "command")
            out.errors.setdefault(key, _message(error))
        return out
    if not out.errors:
        out.body = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
        if out.after:
            out.body["state"] = "inactive"
    return out
