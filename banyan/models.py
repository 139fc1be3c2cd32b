"""Pydantic models of what clients send: task creation, task updates,
continuation edits and memory-usage records. The server validates with these,
the CLI and the TUI validate their forms with the same ones, and
``/openapi.json`` is generated from them.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue

from banyan import constants as c
from banyan.dates import parse_begin, parse_date
from banyan.dependencies import RunWhen
from banyan.ids import ID_PATTERN
from banyan.resources import Resources
from banyan.states import CREATE_STATES, State
from banyan.units import Duration


def _no_nul(value: str) -> str:
    # A NUL cannot reach a process (argv, env and paths are C strings): refuse
    # it here rather than store what no worker can run.
    if "\x00" in value:
        raise ValueError("may not contain a NUL character (\\u0000)")
    return value


NoNul = AfterValidator(_no_nul)
TaskId = Annotated[str, StringConstraints(pattern=ID_PATTERN, min_length=24, max_length=24)]
Name = Annotated[str, StringConstraints(max_length=c.MAX_NAME_CHARS), NoNul]
Command = Annotated[str, StringConstraints(min_length=1, max_length=c.MAX_COMMAND_CHARS), NoNul]
QueueName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=c.MAX_QUEUE_CHARS, pattern=r"^[A-Za-z0-9_.:@/-]+$"),
]
Priority = Annotated[int, Field(ge=-c.MAX_PRIORITY, le=c.MAX_PRIORITY)]
RetryCount = Annotated[int, Field(ge=0, le=c.MAX_RETRY_COUNT)]
Cwd = Annotated[str, StringConstraints(min_length=1, max_length=c.MAX_CWD_CHARS), NoNul]


def _begin(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("expected a date, a duration from now or 'now+DURATION'")
    epoch = parse_begin(value, time.time())
    if not FIRST_DATE_S <= epoch <= LAST_DATE_S:  # NaN fails this too
        raise ValueError("date out of range: years 1 to 9999")
    return epoch


# ``not_before``: a date (RFC 1123, ISO 8601 or epoch seconds), or a duration
# from now ("10 minutes", "now+10minutes"); stored as epoch seconds.
BeginTime = Annotated[
    float,
    BeforeValidator(_begin),
    WithJsonSchema(
        {
            "anyOf": [{"type": "number"}, {"type": "string", "maxLength": 64}],
            "description": "a date (RFC 1123, ISO 8601, epoch seconds), a duration from now "
            "such as '10 minutes', or 'now+10minutes'",
        },
        mode="validation",
    ),
]


def _env_name(value: str) -> str:
    if "=" in value:
        raise ValueError("an environment variable name may not contain '='")
    return _no_nul(value)


def _env_total(value: dict[str, str]) -> dict[str, str]:
    total = sum(len(k) + len(v) for k, v in value.items())
    if total > c.MAX_ENV_TOTAL_CHARS:
        raise ValueError(
            f"the environment holds {total} characters (names and values); "
            f"at most {c.MAX_ENV_TOTAL_CHARS} are allowed"
        )
    return value


EnvName = Annotated[
    str, StringConstraints(min_length=1, max_length=c.MAX_ENV_NAME_CHARS), AfterValidator(_env_name)
]
EnvValue = Annotated[str, StringConstraints(max_length=c.MAX_ENV_VALUE_CHARS), NoNul]
Env = Annotated[
    dict[EnvName, EnvValue], Field(max_length=c.MAX_ENV_ENTRIES), AfterValidator(_env_total)
]
IdList = Annotated[list[TaskId], Field(max_length=c.MAX_CONTINUATIONS)]

_STRICT = ConfigDict(extra="forbid", str_strip_whitespace=False, populate_by_name=True)

# Fields the server manages: named in a clear 422 rather than "extra field".
READ_ONLY_FIELDS = frozenset(
    {
        "retry_count",
        "abandon_count",
        "pending_dependency_count",
        "owner",
        "execution",
        "_created",
        "_updated",
        "_etag",
        "_links",
        "_status",
    }
)


class TaskCreate(BaseModel):
    """A task as submitted with ``POST /tasks``; ``command`` absent = a group task."""

    model_config = _STRICT

    id: TaskId | None = Field(
        default=None,
        alias="_id",
        description="Optional client-chosen id, so one bulk POST can hold a whole tree.",
    )
    name: Name | None = None
    command: Command | None = None
    state: State = Field(default=State.INACTIVE, description="'inactive' (default) or 'available'")
    continuations: IdList = Field(default_factory=list)
    requested_resources: Resources = Field(default_factory=Resources)
    queue: QueueName = c.DEFAULT_QUEUE
    priority: Priority = 0
    max_retry_count: RetryCount = 0
    run_when: RunWhen = Field(
        default=RunWhen.SUCCESS,
        description="what the parents' outcomes must be: 'success', 'finished' or 'failure'",
    )
    max_termination_time: Duration = c.DEFAULT_MAX_TERMINATION_TIME_S
    estimated_runtime: Duration | None = None
    env: Env | None = None
    cwd: Cwd | None = None
    time_limit: Duration | None = Field(
        default=None,
        description="wall-time limit of one attempt; then stopped as a cancel stops it and "
        "ended 'failure (time limit)'. Unset: the server's default_time_limit_s (off unless set)",
    )
    not_before: BeginTime | None = Field(
        default=None, description="not claimed before this time (Slurm's --begin)"
    )
    max_abandon_count: RetryCount = Field(
        default=c.DEFAULT_MAX_ABANDON_COUNT,
        description="reruns after its worker died or was stopped; not max_retry_count's budget",
    )

    @field_validator("state")
    @classmethod
    def _creatable(cls, value: State) -> State:
        if value not in CREATE_STATES:
            raise ValueError("a new task is 'inactive' or 'available'")
        return value

    @field_validator("continuations")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return _dedupe(value)


# PATCH fields without a "none" value: leaving them out keeps them, and an
# explicit null is a 422 (as Eve refuses null for a non-nullable field), never
# a NULL reaching a NOT NULL column.
NOT_NULL_PATCH_FIELDS = (
    "state",
    "continuations",
    "requested_resources",
    "queue",
    "priority",
    "max_retry_count",
    "max_termination_time",
    "max_abandon_count",
    "add_continuations",
    "remove_continuations",
)


def _not_null_in_schema(schema: JsonSchemaValue) -> None:
    """Drop the ``null`` branch pydantic writes for ``X | None`` from the fields
    above, so ``/openapi.json`` documents what is accepted."""
    for name in NOT_NULL_PATCH_FIELDS:
        prop = schema.get("properties", {}).get(name)
        if prop is None or "anyOf" not in prop:
            continue
        branches = [b for b in prop.pop("anyOf") if b != {"type": "null"}]
        prop.pop("default", None)
        if len(branches) == 1:
            prop.update(branches[0])
        else:
            prop["anyOf"] = branches


class TaskPatch(BaseModel):
    """Changes sent with ``PATCH /tasks/{id}``: any subset of the user fields."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=False,
        populate_by_name=True,
        json_schema_extra=_not_null_in_schema,
    )

    name: Name | None = None
    command: Command | None = None
    state: State | None = None
    continuations: IdList | None = None
    requested_resources: dict[str, Any] | None = Field(
        default=None, description="merged into the current request, as Eve merges"
    )
    queue: QueueName | None = None
    priority: Priority | None = None
    max_retry_count: RetryCount | None = None
    max_termination_time: Duration | None = None
    estimated_runtime: Duration | None = None
    env: Env | None = None
    cwd: Cwd | None = None
    time_limit: Duration | None = None  # null: no limit
    not_before: BeginTime | None = None  # null: may start at once
    max_abandon_count: RetryCount | None = None
    add_continuations: IdList | None = None
    remove_continuations: IdList | None = None

    @field_validator(*NOT_NULL_PATCH_FIELDS)
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Runs only for a value that was sent: an absent field keeps its default.
        if value is None:
            raise ValueError("may not be null: leave the field out to keep it")
        return value

    @field_validator("continuations", "add_continuations", "remove_continuations")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _dedupe(value)


class BulkPatchItem(TaskPatch):
    """One element of ``PATCH /tasks``: the id, optionally the etag, and the changes."""

    id: TaskId = Field(alias="_id")
    etag: str | None = Field(default=None, alias="_etag", max_length=128)


class ContinuationEdit(BaseModel):
    """One element of ``POST /tasks/add_continuations`` (or ``remove_continuations``):
    every id in ``values`` becomes (or stops being) a continuation of every id in
    ``targets``."""

    model_config = _STRICT

    targets: Annotated[list[TaskId], Field(min_length=1, max_length=c.MAX_CONTINUATIONS)]
    values: Annotated[list[TaskId], Field(min_length=1, max_length=c.MAX_CONTINUATIONS)]


# Epoch seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the dates Python can show.
FIRST_DATE_S = -62_135_596_800
LAST_DATE_S = 253_402_300_799


class MemoryUsage(BaseModel):
    """A memory sample of a running task, as in the original usage notes."""

    model_config = _STRICT

    task: TaskId
    time: float = Field(description="RFC 1123 or ISO 8601 date, or epoch seconds")
    resident_memory_bytes: Annotated[int, Field(ge=0, le=2**63 - 1)]
    cpu_percent: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(
        None, description="CPU use of the task's processes since the previous sample; 100 = a core"
    )

    @field_validator("time", mode="before")
    @classmethod
    def _date(cls, value: Any) -> float:
        if not isinstance(value, str | int | float):
            raise ValueError("expected a date string")
        epoch = parse_date(value)
        # Stored samples are shown as dates: one no date can show would break every listing.
        if not FIRST_DATE_S <= epoch <= LAST_DATE_S:  # NaN fails this too
            raise ValueError("date out of range: years 1 to 9999")
        return epoch


def _dedupe(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(i.lower() for i in ids))


class ExecutionUpdate(BaseModel):
    """``POST /tasks/{id}/update_execution_data``: a worker's report on its attempt
    over REST (the gateway websocket carries the same reports)."""

    model_config = _STRICT

    execution_key: Annotated[str, StringConstraints(min_length=8, max_length=128)]
    percent: Annotated[float, Field(ge=0, le=100)] | None = None
    message: Annotated[str, StringConstraints(max_length=1024)] | None = None
    exit_status: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    exit_code: int | None = None
    usage: dict[str, Any] | None = None
