"""The task table's filter language (``state:running queue:gpu name~train``)
and its sort orders."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tui.state.looks import STATUS_LOOK, STATUS_RANK, STATUSES
from tui.state.records import Task

STATUS_ALIASES: dict[str, frozenset[str]] = {
    "terminated": frozenset({"success", "failed"}),
    "pending_cancellation": frozenset({"cancelling"}),
    "done": frozenset({"success"}),
    "succeeded": frozenset({"success"}),
    "active": frozenset({"running", "cancelling"}),
    "waiting": frozenset({"inactive", "available"}),
    "pending": frozenset({"inactive", "available"}),
    "ended": frozenset({"success", "failed", "cancelled"}),
    "final": frozenset({"success", "failed", "cancelled"}),
    **{status: frozenset({status}) for status in STATUS_LOOK},
}


FILTER_FIELDS = {"state": "state", "s": "state", "queue": "queue", "q": "queue"}


FILTER_FIELDS |= {"name": "name", "n": "name", "owner": "owner", "worker": "worker", "id": "id"}


_TERM_RE = re.compile(r"^(-?)([a-z_]+)(:|~)(.*)$")


class FilterError(ValueError):
    """A filter the user typed that cannot be read; the message says why."""


@dataclass(frozen=True)
class Term:
    field: str
    op: str  # ":" any of the comma-separated values, "~" contains (no case)
    values: tuple[str, ...]
    negate: bool = False


@dataclass(frozen=True)
class Filter:
    terms: tuple[Term, ...] = ()
    text: str = ""

    def __bool__(self) -> bool:
        return bool(self.terms)


def parse_filter(text: str) -> Filter:
    """``state:running queue:gpu name~train``; ``-state:failed`` negates, commas
    give alternatives (``state:running,failed``), a bare word is ``name~word``."""
    terms = []
    for word in text.split():
        match = _TERM_RE.match(word)
        if match is None:
            terms.append(Term("name", "~", (word.lower(),)))
            continue
        negate, key, op, value = match.groups()
        name = FILTER_FIELDS.get(key)
        if name is None:
            known = ", ".join(sorted({"state", "queue", "name", "owner", "worker", "id"}))
            raise FilterError(f"unknown filter field {key!r}; use {known}")
        if not value:
            raise FilterError(f"{key}{op} needs a value, e.g. state:running")
        values = tuple(v for v in value.lower().split(",") if v)
        if name == "state":
            if op == "~":
                raise FilterError("state takes ':' (state:running), not '~'")
            unknown = [v for v in values if v not in STATUS_ALIASES]
            if unknown:
                raise FilterError(
                    f"unknown state {unknown[0]!r}; use {', '.join(STATUSES)}, "
                    "terminated, active, waiting or ended"
                )
            values = tuple(sorted(set().union(*(STATUS_ALIASES[v] for v in values))))
        terms.append(Term(name, op, values, negate=bool(negate)))
    return Filter(tuple(terms), text.strip())


def _field(task: Task, name: str) -> str:
    if name == "state":
        return task.status
    if name == "name":
        return f"{task.name or ''}\x00{task.command or ''}".lower()
    value = getattr(task, name)
    return "" if value is None else str(value).lower()


def _term_matches(term: Term, task: Task) -> bool:
    value = _field(task, term.field)
    if term.op == "~":
        hit = any(v in value for v in term.values)
    elif term.field == "name":
        hit = any(v in value.split("\x00") for v in term.values)
    elif term.field == "id":
        hit = any(value.startswith(v) or value.endswith(v) for v in term.values)
    else:
        hit = value in term.values
    return hit != term.negate


def matches(flt: Filter, task: Task) -> bool:
    return all(_term_matches(term, task) for term in flt.terms)


SORT_KEYS = ("created", "id", "name", "state", "queue", "priority", "updated")


VOLATILE_SORT_KEYS = frozenset({"state", "updated"})  # events move rows


SortKey = tuple[Any, ...]


@dataclass(frozen=True)
class Sort:
    key: str = "created"  # newest first: creation time, as client-chosen ids sort anywhere
    descending: bool = True

    @property
    def text(self) -> str:
        return ("-" if self.descending else "") + self.key


def parse_sort(text: str) -> Sort:
    """``name``, ``-priority`` (descending) or ``+state``."""
    word = text.strip().lower()
    descending = word.startswith("-")
    key = word.lstrip("+-") or "created"
    if key == "age":
        key, descending = "created", not descending
    if key not in SORT_KEYS:
        raise FilterError(f"cannot sort by {key!r}; use {', '.join(SORT_KEYS)} or age")
    return Sort(key, descending)


def sort_key(sort: Sort) -> Callable[[Task], SortKey]:
    if sort.key == "created":
        return lambda t: (t.created, t.id)
    if sort.key == "id":
        return lambda t: (t.id,)
    if sort.key == "name":
        return lambda t: (t.label.lower(), t.id)
    if sort.key == "state":
        return lambda t: (STATUS_RANK.get(t.status, 99), t.id)
    if sort.key == "queue":
        return lambda t: (t.queue, t.id)
    if sort.key == "priority":
        return lambda t: (t.priority, t.id)
    return lambda t: (t.updated, t.id)
