"""The event feed's events as one tagged union, as ``banyan.protocol`` is for
the worker protocol.

Each event type is a model with ``type: Literal[...]`` and a typed ``data``;
``Event`` is their discriminated union. The server builds events from these
models (``server.domain.events``) and serialises each once when it stores it
(``encode_data``); clients turn a received frame back into a model with
``decode``. ``EVENT_TYPES`` (what ``?types=`` accepts) and ``EVENT_FIELDS``
(what ``?where=`` may filter on) are derived from the models, not listed by
hand: a data field is filterable when it is declared with ``Filter(kind)``.

Wire format (version 1), unchanged: ``{"seq", "time", "timestamp", "type",
"data"}``. In ``data``, fields declared without a default are always sent
(``name`` may be ``null``); fields with a ``None`` default are left out when
they are ``None``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final, Literal, TypeAlias, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from banyan.query import Field as QueryField
from banyan.query import FieldKind


class Filter:
    """Marks a data field as filterable in ``?where=`` (with its query kind)."""

    def __init__(self, kind: FieldKind) -> None:
        self.kind = kind


_ID = Annotated[str, Field(alias="_id"), Filter(FieldKind.ID)]
_STR = Annotated[str, Filter(FieldKind.STR)]
_INT = Annotated[int, Filter(FieldKind.INT)]
_OPT_STR = Annotated[str | None, Filter(FieldKind.STR)]
_OPT_INT = Annotated[int | None, Filter(FieldKind.INT)]


class EventData(BaseModel):
    """Base of every event's ``data``: unknown keys are kept (newer servers)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    def dump(self) -> dict[str, Any]:
        """The wire form: aliases, required fields always, optional ones when set."""
        return self.model_dump(by_alias=True, exclude_defaults=True)

    def dump_json(self) -> str:
        """``dump`` as compact JSON (UTF-8 kept), as the events table stores it."""
        return self.model_dump_json(by_alias=True, exclude_defaults=True)


# --- task events ---------------------------------------------------------------


class TaskCreatedData(EventData):
    id: _ID
    name: _OPT_STR
    state: _STR
    queue: _STR
    priority: _INT
    owner: _STR
    group: bool
    # The job (one POST /tasks) it belongs to. Not a ``where`` field: only this
    # event carries it, so a feed filtered on it would miss the state changes.
    job: str | None = None


class TaskStateData(EventData):
    id: _ID
    state: _STR
    previous: _STR
    name: _OPT_STR
    queue: _STR
    worker: _OPT_STR = None
    exit_status: _OPT_STR = None
    attempt: _OPT_INT = None
    retry: bool | None = None
    cause: str | None = None  # the task whose cancellation cascaded here


class TaskProgressData(EventData):
    id: _ID
    name: _OPT_STR
    queue: _STR
    attempt: _INT
    percent: Annotated[float | None, Filter(FieldKind.NUMBER)] = None
    message: str | None = None


class TaskUsageData(EventData):
    id: _ID
    attempt: _INT
    time: float
    resident_memory_bytes: int
    cpu_percent: float | None = None  # 100 = one core busy; absent when not measured


# --- worker events -------------------------------------------------------------


class WorkerJoinedData(EventData):
    name: _STR
    host: str
    capacity: dict[str, Any]
    queues: list[str]
    rejoined: bool
    resumed: list[str]


class WorkerHeartbeatData(EventData):
    name: _STR
    worker: _STR


class WorkerGoneData(EventData):
    """``worker.lost`` (silent too long) and ``worker.left`` (said goodbye)."""

    name: _STR
    abandoned: list[str]


# --- the union -----------------------------------------------------------------


class _EventBase(BaseModel):
    """Where an event sits in the feed; unset until it is stored."""

    model_config = ConfigDict(frozen=True)
    seq: int | None = None
    time: str | None = None
    timestamp: float | None = None


class TaskCreated(_EventBase):
    type: Literal["task.created"] = "task.created"
    data: TaskCreatedData


class TaskState(_EventBase):
    type: Literal["task.state"] = "task.state"
    data: TaskStateData


class TaskProgress(_EventBase):
    type: Literal["task.progress"] = "task.progress"
    data: TaskProgressData


class TaskUsage(_EventBase):
    type: Literal["task.usage"] = "task.usage"
    data: TaskUsageData


class WorkerJoined(_EventBase):
    type: Literal["worker.joined"] = "worker.joined"
    data: WorkerJoinedData


class WorkerHeartbeat(_EventBase):
    type: Literal["worker.heartbeat"] = "worker.heartbeat"
    data: WorkerHeartbeatData


class WorkerLost(_EventBase):
    type: Literal["worker.lost"] = "worker.lost"
    data: WorkerGoneData


class WorkerLeft(_EventBase):
    type: Literal["worker.left"] = "worker.left"
    data: WorkerGoneData


_MEMBERS: Final = (
    TaskCreated,
    TaskState,
    TaskProgress,
    TaskUsage,
    WorkerJoined,
    WorkerHeartbeat,
    WorkerLost,
    WorkerLeft,
)
Event: TypeAlias = Annotated[
    TaskCreated
    | TaskState
    | TaskProgress
    | TaskUsage
    | WorkerJoined
    | WorkerHeartbeat
    | WorkerLost
    | WorkerLeft,
    Field(discriminator="type"),
]
_EVENT: Final[TypeAdapter[Event]] = TypeAdapter(Event)


# --- feed control frames (not events: no seq, never stored) ----------------------


class FeedHello(BaseModel):
    """The first frame on every feed connection."""

    type: Literal["feed.hello"] = "feed.hello"
    version: int
    seq: int
    oldest_seq: int


class FeedResync(BaseModel):
    """``since`` is older than what is retained, or ahead of the feed: refetch."""

    type: Literal["feed.resync"] = "feed.resync"
    oldest_seq: int


# --- derived ---------------------------------------------------------------------


def _type_of(model: type[_EventBase]) -> str:
    (value,) = get_args(model.model_fields["type"].annotation)
    return str(value)


EVENT_TYPES: Final = frozenset(_type_of(m) for m in _MEMBERS)


def _filterable() -> dict[str, QueryField]:
    found: dict[str, QueryField] = {}
    for member in _MEMBERS:
        data_model = member.model_fields["data"].annotation
        assert isinstance(data_model, type) and issubclass(data_model, EventData)
        for name, info in data_model.model_fields.items():
            for mark in info.metadata:
                if isinstance(mark, Filter):
                    found.setdefault(info.alias or name, QueryField(mark.kind))
    return found


EVENT_FIELDS: Final = _filterable()


# --- encode / decode -------------------------------------------------------------


def encode_data(event: _EventBase) -> str:
    """An event's ``data`` as stored (compact JSON, UTF-8 kept): serialised once."""
    data: EventData = event.data  # type: ignore[attr-defined]
    return data.dump_json()


def encode(event: _EventBase) -> str:
    """The whole frame as the feed sends it (``seq``/``time`` must be set)."""
    data: EventData = event.data  # type: ignore[attr-defined]
    frame = {
        "seq": event.seq,
        "time": event.time,
        "timestamp": event.timestamp,
        "type": _type_of(type(event)),
        "data": data.dump(),
    }
    return json.dumps(frame, separators=(",", ":"))


def decode(frame: str | bytes | dict[str, Any]) -> Event:
    """A received event frame (text or parsed) as its model; ``ValidationError``
    for an unknown type or a malformed frame."""
    if isinstance(frame, dict):
        return _EVENT.validate_python(frame)
    return _EVENT.validate_json(frame)
