"""The worker gateway's wire protocol (``GET /workers/connect``, websocket):
one tagged union of frames (``type`` is the tag) with one encode and one
decode. Text frames carry one JSON object each.

A connection starts with the worker's ``hello`` and the server's ``welcome``;
then the worker sends heartbeats, claims and reports, and the server pushes
``work_available`` and ``cancel``. Every report names its attempt by the
``execution_key`` it was handed with ``assigned``.

Where both sides speak :data:`BATCH_PROTOCOL`, a websocket message may also
be a ``batch``: several frames in one message, applied in order, each as if
it came alone (a report still gets its own ``accepted`` or ``refused``).
Each side gathers the frames it has ready in one turn of its event loop into
one message (:func:`pack`): a worker's ``started``, ``finished`` and refill
``claim`` after a task ends, or the server's ``accepted`` and ``assigned``
answered by one commit. A lone frame is sent as itself, at once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    model_serializer,
)

from banyan.errors import InvalidInput
from banyan.resources import Resources

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 4 * 1024 * 1024
MAX_CLAIM = 256
MAX_PREFETCH = 64

# Websocket close codes (4000-4999 are the application's).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_BAD_FRAME = 4400
CLOSE_UNAUTHORIZED = 4401  # the connection's token was revoked (gateway and event feed)
CLOSE_FORBIDDEN = 4403  # the hello names a worker that is not the token's
CLOSE_LOST = 4408  # the server declared this worker lost (it was silent too long)
CLOSE_DUPLICATE = 4409  # another process is connected as this worker: refused
CLOSE_REPLACED = 4410  # the same process connected again: this older socket is closed

# The websocket subprotocol a worker offers to say it numbers its heartbeats
# and wants each answered with ``heartbeat_ack`` (worker/lease.py). A server
# that selects it acks; an older one ignores the offer, and the worker then
# runs without a lease. Workers that do not offer it are served as before.
LEASE_PROTOCOL = "banyan.lease.1"
# The subprotocol of peers that also send and read ``batch`` frames; it
# includes the lease's terms (numbered heartbeats, answered). A worker offers
# it before LEASE_PROTOCOL: a server that knows it selects it, an older one
# the lease's, and the worker then sends single frames only. The server reads
# a ``batch`` from any worker, but sends one only where it selected this.
BATCH_PROTOCOL = "banyan.batch.1"
MAX_BATCH = 256  # frames in one batch
# A batch's text at most (characters): at most MAX_FRAME_BYTES bytes of UTF-8
# even if every character took four. A frame longer than that goes alone.
MAX_BATCH_CHARS = MAX_FRAME_BYTES // 4

_FRAME = ConfigDict(extra="forbid")
Key = Annotated[str, Field(min_length=8, max_length=128)]
TaskRef = Annotated[str, Field(pattern=r"^[0-9a-f]{24}$")]


def _drop_none(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    """Leave out optional fields added after version 1 while unset: a peer of
    an older version forbids unknown fields."""
    for key in keys:
        if data.get(key) is None:
            data.pop(key, None)
    return data


class Held(BaseModel):
    """An attempt a (re)connecting worker is still running."""

    model_config = _FRAME
    task: TaskRef
    execution_key: Key


Secret = Annotated[str, Field(min_length=16, max_length=128)]


class Hello(BaseModel):
    """The first frame of a connection. ``name``: the worker's name; with a
    worker token it is the token's name (None: take it from the token; another
    name is refused with 4403), with an admin token any name (None:
    ``host:pid``). ``secret``: the one the server handed this process in its
    last ``welcome``: the proof that a reconnect comes from the same process,
    needed to replace a connection still open and to re-attach to attempts."""

    model_config = _FRAME
    type: Literal["hello"] = "hello"
    name: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    capacity: Resources
    queues: Annotated[list[Annotated[str, Field(min_length=1, max_length=128)]], Field(
        min_length=1, max_length=64)] = ["default"]  # fmt: skip
    version: int = PROTOCOL_VERSION
    running: Annotated[list[Held], Field(max_length=4096)] = []
    host: Annotated[str, Field(max_length=256)] = ""
    pid: int = 0
    secret: Secret | None = None
    # Seconds the worker has left (``banyan-worker --time-limit``); None: no lifetime.
    remaining_s: Annotated[float, Field(ge=0)] | None = None
    # How the worker keeps a task's processes (``worker.containment``):
    # ``cgroup``, ``subreaper`` or ``group`` (process groups only); shown in
    # ``GET /workers``. None: a worker older than this field.
    containment: Annotated[str, Field(min_length=1, max_length=32)] | None = None

    @model_serializer(mode="wrap")
    def _compat(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _drop_none(handler(self), "remaining_s", "containment")


class Heartbeat(BaseModel):
    model_config = _FRAME
    type: Literal["heartbeat"] = "heartbeat"
    draining: bool = False  # the worker is finishing what it runs and claims nothing more
    seq: Annotated[int, Field(ge=0)] | None = None  # set: answer with heartbeat_ack

    @model_serializer(mode="wrap")
    def _without_null_seq(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # An unnumbered heartbeat is the version-1 frame exactly: older servers
        # forbid unknown fields.
        data: dict[str, Any] = handler(self)
        if data.get("seq") is None:
            data.pop("seq", None)
        return data


class Claim(BaseModel):
    """Ask for up to ``limit`` tasks that fit ``free``, and (``prefetch``) up to
    that many more to hold queued, each fitting the worker's whole capacity,
    started by the worker as soon as a slot frees (it then sends ``started``)."""

    model_config = _FRAME
    type: Literal["claim"] = "claim"
    free: Resources
    limit: Annotated[int, Field(ge=1, le=MAX_CLAIM)] = 1
    prefetch: Annotated[int, Field(ge=0, le=MAX_PREFETCH)] = 0
    # The worker's remaining lifetime: only tasks whose time_limit fits are given.
    remaining_s: Annotated[float, Field(ge=0)] | None = None

    @model_serializer(mode="wrap")
    def _compat(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Without prefetch or a lifetime the frame is the version-1 frame exactly.
        data = _drop_none(handler(self), "remaining_s")
        if not data.get("prefetch"):
            data.pop("prefetch", None)
        return data


class Started(BaseModel):
    """A queued attempt's process really started at ``time`` (epoch seconds)."""

    model_config = _FRAME
    type: Literal["started"] = "started"
    task: TaskRef
    execution_key: Key
    time: float


class Returned(BaseModel):
    """A queued attempt handed back unstarted (the worker is leaving, or its
    lease lapsed): the task goes back to the queue without counting a retry.
    Answered with ``accepted`` or ``refused`` like ``finished``."""

    model_config = _FRAME
    type: Literal["returned"] = "returned"
    task: TaskRef
    execution_key: Key


class Progress(BaseModel):
    model_config = _FRAME
    type: Literal["progress"] = "progress"
    task: TaskRef
    execution_key: Key
    percent: Annotated[float, Field(ge=0, le=100)] | None = None
    message: Annotated[str, Field(max_length=1024)] | None = None


class Usage(BaseModel):
    model_config = _FRAME
    type: Literal["usage"] = "usage"
    task: TaskRef
    execution_key: Key
    time: float
    resident_memory_bytes: Annotated[int, Field(ge=0)]
    cpu_percent: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class Output(BaseModel):
    """A chunk of a running task's stdout or stderr (text, UTF-8 with replacement)."""

    model_config = _FRAME
    type: Literal["output"] = "output"
    task: TaskRef
    execution_key: Key
    stream: Literal["stdout", "stderr"]
    data: Annotated[str, Field(max_length=MAX_FRAME_BYTES)]


class Finished(BaseModel):
    model_config = _FRAME
    type: Literal["finished"] = "finished"
    task: TaskRef
    execution_key: Key
    exit_status: Annotated[str, Field(min_length=1, max_length=128)]
    exit_code: int | None = None
    usage: dict[str, Any] | None = None


class Bye(BaseModel):
    """The worker is leaving on purpose (after reporting what it ran)."""

    model_config = _FRAME
    type: Literal["bye"] = "bye"


class Welcome(BaseModel):
    """The answer to ``hello``: the worker's name, the timing settings it must
    follow, which of its held attempts go on (``resumed``) or must be stopped
    (``dropped``), and ``secret``: this process's proof of identity, to send
    in the ``hello`` of every reconnect (never shown, never logged)."""

    model_config = _FRAME
    type: Literal["welcome"] = "welcome"
    worker: str
    heartbeat_interval_s: float
    worker_timeout_s: float
    server_timeout_s: float
    resumed: list[str] = []  # tasks whose attempts the server still counts as this worker's
    dropped: list[str] = []  # held attempts the server no longer knows: stop them
    secret: Secret | None = None


class HeartbeatAck(BaseModel):
    """The server handled heartbeat ``seq`` (its silence clock for the worker was reset)."""

    model_config = _FRAME
    type: Literal["heartbeat_ack"] = "heartbeat_ack"
    seq: int


class AssignedAttempt(BaseModel):
    model_config = _FRAME
    task: str
    attempt: int
    execution_key: str
    command: str | None
    env: dict[str, str] | None = None
    cwd: str | None = None
    max_termination_time: float
    requested_resources: dict[str, Any]
    name: str | None = None
    time_limit: float | None = None  # seconds the attempt may run; then "failure (time limit)"
    queued: bool = False  # prefetched: start it when a slot frees, then send ``started``

    @model_serializer(mode="wrap")
    def _compat(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Unset: the version-1 frame exactly (older workers forbid the fields).
        data = _drop_none(handler(self), "time_limit")
        if not data.get("queued"):
            data.pop("queued", None)
        return data


class Assigned(BaseModel):
    model_config = _FRAME
    type: Literal["assigned"] = "assigned"
    attempts: list[AssignedAttempt]


class WorkAvailable(BaseModel):
    model_config = _FRAME
    type: Literal["work_available"] = "work_available"


class Cancel(BaseModel):
    model_config = _FRAME
    type: Literal["cancel"] = "cancel"
    task: str
    execution_key: str


class GiveBack(BaseModel):
    """Hand this queued attempt back (``returned``) if it has not started:
    another worker of its queue has a free slot now."""

    model_config = _FRAME
    type: Literal["give_back"] = "give_back"
    task: str
    execution_key: str


class Accepted(BaseModel):
    """The server applied this attempt's ``finished`` report: the worker may forget it."""

    model_config = _FRAME
    type: Literal["accepted"] = "accepted"
    task: str
    execution_key: str


class Refused(BaseModel):
    """A report the server did not accept (e.g. a superseded attempt: code 409)."""

    model_config = _FRAME
    type: Literal["refused"] = "refused"
    task: str
    execution_key: str
    code: int
    message: str


BatchedWorkerFrame = Annotated[
    Heartbeat | Claim | Progress | Usage | Output | Finished | Started | Returned,
    Field(discriminator="type"),
]
BatchedServerFrame = Annotated[
    Assigned | WorkAvailable | Cancel | GiveBack | Accepted | Refused | HeartbeatAck,
    Field(discriminator="type"),
]


class WorkerBatch(BaseModel):
    """Several worker frames in one message (:data:`BATCH_PROTOCOL`), applied
    in their order; never ``hello`` or ``bye``, which always come alone."""

    model_config = _FRAME
    type: Literal["batch"] = "batch"
    frames: Annotated[list[BatchedWorkerFrame], Field(min_length=1, max_length=MAX_BATCH)]


class ServerBatch(BaseModel):
    """Several server frames in one message (:data:`BATCH_PROTOCOL`), handled
    in their order; never ``welcome``, which always comes alone."""

    model_config = _FRAME
    type: Literal["batch"] = "batch"
    frames: Annotated[list[BatchedServerFrame], Field(min_length=1, max_length=MAX_BATCH)]


WorkerFrame = Annotated[
    Hello
    | Heartbeat
    | Claim
    | Progress
    | Usage
    | Output
    | Finished
    | Started
    | Returned
    | Bye
    | WorkerBatch,
    Field(discriminator="type"),
]
ServerFrame = Annotated[
    Welcome
    | Assigned
    | WorkAvailable
    | Cancel
    | GiveBack
    | Accepted
    | Refused
    | HeartbeatAck
    | ServerBatch,
    Field(discriminator="type"),
]
# Frames that always travel alone: the first of each side, and the last.
_ALONE = (Hello, Welcome, Bye)
_WORKER = TypeAdapter(WorkerFrame)
_SERVER = TypeAdapter(ServerFrame)


def encode(frame: BaseModel) -> str:
    return frame.model_dump_json(exclude_none=False)


def pack(frames: list[Any]) -> list[str]:
    """The websocket messages that carry ``frames``, in order: runs of
    frames joined as ``batch`` messages (at most :data:`MAX_BATCH` frames and
    :data:`MAX_BATCH_CHARS` each), a frame that cannot be batched or is too
    long on its own, and a run of one frame as that frame itself. Only for a
    peer that speaks :data:`BATCH_PROTOCOL`."""
    messages: list[str] = []
    run: list[str] = []
    run_chars = 0

    def close_run() -> None:
        nonlocal run_chars
        if len(run) == 1:
            messages.append(run[0])
        elif run:
            messages.append('{"type":"batch","frames":[' + ",".join(run) + "]}")
        run.clear()
        run_chars = 0

    for frame in frames:
        text = encode(frame)
        if isinstance(frame, _ALONE) or len(text) > MAX_BATCH_CHARS - 64:
            close_run()
            messages.append(text)
            continue
        if len(run) == MAX_BATCH or run_chars + len(text) + 1 > MAX_BATCH_CHARS - 64:
            close_run()
        run.append(text)
        run_chars += len(text) + 1
    close_run()
    return messages


def _decode(adapter: TypeAdapter[Any], text: str | bytes) -> Any:
    if len(text) > MAX_FRAME_BYTES:
        raise InvalidInput(f"frame larger than {MAX_FRAME_BYTES} bytes")
    try:
        return adapter.validate_json(text)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"bad frame: {where}: {first['msg']}") from exc


def decode_worker_frame(text: str | bytes) -> WorkerFrame:
    result: WorkerFrame = _decode(_WORKER, text)
    return result


def decode_server_frame(text: str | bytes) -> ServerFrame:
    result: ServerFrame = _decode(_SERVER, text)
    return result
