"""The narrow async persistence interface the server talks to. A backend
(``server/stores/<name>/``) loads and saves; the rules it applies inside a
change (who may, what a transition does, which tasks a claim gets, what each
event carries) are ``server.domain``'s, so every backend agrees.

Contract shared by every method:

- Documents come back as plain dicts shaped as the API returns them, times
  as epoch seconds (the views format them); ``execution`` never carries the
  execution key.
- A method that changes something is atomic: all of it commits, with the
  events that describe it (built by ``server.domain.events``), or none of it
  does; ``add_commit_listener`` callbacks run after each commit.
- Errors are ``banyan.errors`` (``NotFound``, ``Conflict``, ``Forbidden``,
  ``InvalidInput``, ``PreconditionFailed``…), never a backend's own.
- The behaviour suite in ``tests/store/`` runs against every backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, NotRequired, TypedDict

from banyan.models import BulkPatchItem, ContinuationEdit, MemoryUsage, TaskCreate, TaskPatch
from banyan.query import Node
from banyan.resources import Amounts, Resources
from banyan.states import Actor
from banyan.tokens import Caller, Role
from server.domain.idempotency import Answer, Submission


@dataclass(frozen=True)
class Query:
    """A parsed collection query: filter, order, page."""

    where: Node | None = None
    sort: tuple[tuple[str, int], ...] = ()
    page: int = 1
    max_results: int = 25


@dataclass
class Page:
    items: list[dict[str, Any]]
    total: int


@dataclass
class ItemResult:
    """One element of a bulk PATCH: the new document, or the error for that item."""

    task_id: str
    doc: dict[str, Any] | None = None
    error: Exception | None = None


class CreatedTask(TypedDict):
    """What a create returns per task (the view adds ``_status`` and formats the time)."""

    _id: str
    _etag: str
    _created: float
    job: str


class ClaimedAttempt(TypedDict):
    """An attempt a claim hands out (``banyan.protocol.AssignedAttempt``'s fields)."""

    task: str
    attempt: int
    execution_key: str
    requested_resources: dict[str, Any]
    name: str | None
    command: str | None
    env: dict[str, str] | None
    cwd: str | None
    max_termination_time: int
    time_limit: float | None
    queued: NotRequired[bool]  # prefetched: started by the worker when a slot frees


class Joined(NamedTuple):
    """A worker's join: the attempts it named that go on, and those dropped."""

    resumed: list[str]
    dropped: list[str]


class WorkerIdentity(NamedTuple):
    """What the gateway checks before a worker joins: the digest of the secret
    its current process holds (None before one was handed out), and how many
    attempts are open in its name."""

    secret: str | None
    open_attempts: int


@dataclass(frozen=True)
class TokenInfo:
    name: str
    role: Role
    created: float
    revoked: float | None = None


@dataclass
class Health:
    ok: bool
    schema_version: int
    details: dict[str, Any] = field(default_factory=dict)


class Store(ABC):
    """Persistence for tasks, attempts, workers, logs, tokens and events."""

    # --- lifetime -----------------------------------------------------------------

    @abstractmethod
    async def open(self) -> None:
        """Connect, create or migrate the schema; before any other call."""

    @abstractmethod
    async def close(self) -> None:
        """Finish pending writes and disconnect; the store is unusable after."""

    @abstractmethod
    async def health(self) -> Health:
        """Whether the store answers, its schema version and backend details."""

    # --- tasks --------------------------------------------------------------------

    @abstractmethod
    async def create_tasks(
        self, items: Sequence[TaskCreate], caller: Caller, *, job_name: str | None = None
    ) -> list[CreatedTask]:
        """Create ``items`` all or nothing, owned by ``caller``, as one job
        (its id the first task's, its name ``job_name`` or the first task's
        name; every task's ``job`` names it); a task with
        every parent known and ``state`` available becomes available (a group
        task succeeds at once). Continuations may name other items by their
        client ``_id`` or existing tasks the caller may change. Returns
        ``_id``/``_etag``/``_created`` per item, in order; ``InvalidInput``
        (with the item's index in ``issues``) for a cycle or unknown id."""

    @abstractmethod
    async def create_tasks_once(
        self,
        items: Sequence[TaskCreate],
        caller: Caller,
        submission: Submission,
        respond: Callable[[list[CreatedTask]], tuple[int, Any]],
        *,
        job_name: str | None = None,
    ) -> Answer:
        """``create_tasks`` under an ``Idempotency-Key`` (``server.domain.idempotency``),
        in one transaction: if ``caller`` used ``submission.key`` within the
        retention window, the stored answer (``replayed``), or ``InvalidInput``
        for another request body; else the tasks are made and ``respond``'s
        ``(status, body)`` for them is stored beside them and returned (``respond``
        may raise to refuse: nothing is made or stored)."""

    @abstractmethod
    async def find_jobs(self, query: Query) -> Page:
        """One page of jobs (``banyan.fields.JOB_FIELDS``): ``_id``, ``name``,
        ``owner``, ``_created``, ``total``, ``counts`` (tasks by state),
        ``time_started`` (first start), ``time_ended`` (last end, once every
        task has ended)."""

    @abstractmethod
    async def get_job(self, job_id: str) -> dict[str, Any]:
        """One job, shaped as ``find_jobs`` gives them; ``NotFound``."""

    @abstractmethod
    async def get_task(self, task_id: str) -> dict[str, Any]:
        """The task document; ``NotFound``."""

    @abstractmethod
    async def find_tasks(self, query: Query) -> Page:
        """One page of task documents matching ``query`` (already parsed and
        checked against the public fields), and the total count."""

    @abstractmethod
    async def update_task(
        self, task_id: str, patch: TaskPatch, caller: Caller, *, if_match: str | None = None
    ) -> dict[str, Any]:
        """Apply ``patch`` (fields, continuation edits, a state change through
        ``transitions.user_change``) if ``caller`` may change the task and
        ``if_match`` names its current ``_etag``; returns the new document.
        ``NotFound``, ``Forbidden``, ``PreconditionFailed``/``Required``,
        ``Conflict`` (a transition the table refuses, a running task's
        execution fields)."""

    @abstractmethod
    async def update_tasks(
        self, items: Sequence[BulkPatchItem], caller: Caller
    ) -> list[ItemResult]:
        """Bulk PATCH: each item is applied on its own (its own all or nothing);
        one result per item, in order, with the document or the error."""

    @abstractmethod
    async def edit_continuations(
        self, edits: Sequence[ContinuationEdit], caller: Caller, *, add: bool
    ) -> None:
        """Add (``add``) or remove parent → child edges, all or nothing, with
        the same checks as a PATCH of ``continuations``."""

    @abstractmethod
    async def history(self, task_id: str) -> list[dict[str, Any]]:
        """The task's attempts, oldest first: attempt, worker, times, exit
        status and code, usage; ``NotFound``."""

    # --- attempts (the worker gateway drives these) ---------------------------------

    @abstractmethod
    async def claim(
        self,
        *,
        worker: str,
        token: str,
        free: Resources,
        queues: Sequence[str],
        limit: int,
        remaining_s: float | None = None,
        prefetch: int = 0,
        capacity: Resources | None = None,
    ) -> list[ClaimedAttempt]:
        """Start an attempt for each task ``server.domain.claims.pack`` picks
        from the available tasks in ``queues`` (loaded in ``claims.ORDER``, at
        most ``claims.scan_limit(limit)``) for the free share ``free``; each
        gets a new random execution key. Only tasks whose ``not_before`` has
        come and whose ``time_limit`` fits the worker's remaining lifetime
        ``remaining_s`` (``claims.time_bounds``). Nothing fits: ``[]``. Then,
        with ``prefetch``, up to that many queued attempts
        (``claims.pack_queued`` against ``capacity``, under the same bounds):
        ``queued`` set, and no ``time_started`` until :meth:`start_queued`."""

    @abstractmethod
    async def start_queued(
        self, task_id: str, execution_key: str, *, time: float, caller: Caller, worker: str
    ) -> None:
        """A queued attempt's process started at ``time`` (its ``time_started``);
        a repeat is harmless; ``Conflict`` once the attempt has ended."""

    @abstractmethod
    async def return_queued(
        self, task_id: str, execution_key: str, *, caller: Caller, worker: str
    ) -> None:
        """A queued attempt handed back unstarted: ``transitions.unqueue``
        (available again, no retry counted; cancelled if asked to stop).
        ``Conflict`` when it has started or ended."""

    @abstractmethod
    async def next_begin(self) -> float | None:
        """The earliest ``not_before`` still ahead among available tasks, or ``None``."""

    @abstractmethod
    async def finish(
        self,
        task_id: str,
        execution_key: str,
        *,
        exit_status: str,
        exit_code: int | None,
        usage: dict[str, Any] | None,
        caller: Caller,
        actor: Actor = Actor.WORKER,
        worker: str | None = None,
    ) -> None:
        """End the attempt ``execution_key`` names (``transitions.end_attempt``:
        release, retry or cascade). Nothing is returned: the callers (the
        worker gateway, once per task) have no use for the document, and
        reading it cost about a twentieth of the dispatch path. A repeat of
        the report already applied changes nothing; a stale key or another
        status is ``Conflict``; another worker's attempt ``Forbidden``."""

    @abstractmethod
    async def report_progress(
        self, task_id: str, execution_key: str, progress: dict[str, Any], caller: Caller
    ) -> None:
        """Record the running attempt's progress (``percent``, ``message``) and
        emit ``task.progress``; ``Conflict`` once the attempt has ended."""

    @abstractmethod
    async def abandon_worker(self, worker: str) -> list[str]:
        """End every open attempt of ``worker`` as abandoned (the retry rule);
        returns the task ids."""

    # --- memory usage ---------------------------------------------------------------

    @abstractmethod
    async def add_memory_usage(self, records: Sequence[MemoryUsage], caller: Caller) -> int:
        """Store memory samples, each for the task's current attempt (a worker
        only for attempts it holds); returns how many; emits ``task.usage``."""

    @abstractmethod
    async def find_memory_usage(self, query: Query) -> Page:
        """One page of memory samples matching ``query``."""

    # --- events ---------------------------------------------------------------------

    @abstractmethod
    async def events_since(self, seq: int, *, limit: int = 1000) -> list[dict[str, Any]]:
        """Up to ``limit`` stored events after ``seq``, in ``seq`` order, each
        ``{"seq", "time" (epoch s), "type", "data"}``."""

    @abstractmethod
    async def last_seq(self) -> int:
        """The newest event's seq (0 when there are none)."""

    @abstractmethod
    async def oldest_seq(self) -> int:
        """The oldest retained event's seq (0 when there are none)."""

    @abstractmethod
    async def prune_events(self, *, keep: int) -> int:
        """Delete all but the newest ``keep`` events; returns how many went."""

    @abstractmethod
    def add_commit_listener(self, callback: Callable[[], None]) -> None:
        """``callback`` runs after every commit (the event hub reads from there)."""

    def add_event_listener(self, callback: Callable[[list[dict[str, Any]]], None]) -> bool:
        """Where the backend can: ``callback`` gets the events of each commit
        of this process, as ``events_since`` would return them, right after it
        (no read of the table they were just written to), and True. A backend
        that cannot returns False, and the hub reads ``events_since`` after
        each commit instead."""
        return False

    # --- workers and their output -----------------------------------------------------

    @abstractmethod
    async def join_worker(
        self,
        *,
        name: str,
        token: str,
        capacity: dict[str, Any],
        queues: list[str],
        host: str,
        pid: int,
        held: Sequence[tuple[str, str]],
        same_process: bool = False,
        secret: str = "",
    ) -> Joined:
        """Record the worker as connected, with ``secret`` (a digest) as the
        proof its process carries from now on. Only for the ``same_process``
        (proven by the gateway, ``domain.identity``) are the attempts it says
        it holds (``held``: task id, execution key) and that are still current
        resumed; the others are dropped, and every open attempt of the name
        that does not go on ends abandoned (uncounted if the same process
        never got it). Emits ``worker.joined``."""

    @abstractmethod
    async def worker_identity(self, name: str) -> WorkerIdentity | None:
        """The digest of the secret of the worker's process and its count of
        open attempts; None for a name never seen."""

    @abstractmethod
    async def leave_worker(self, name: str, *, lost: bool) -> list[str]:
        """The worker left (or was ``lost``): its open attempts end abandoned;
        returns their task ids; emits ``worker.left``/``worker.lost``.
        ``NotFound`` for an unknown worker."""

    @abstractmethod
    async def touch_workers(self, heard: Mapping[str, float]) -> None:
        """When each worker was last heard from (epoch seconds; an earlier time
        than the one stored is ignored): one ``worker.heartbeat`` each. Leaving
        or being lost does not change this time (that is ``left``)."""

    @abstractmethod
    async def prune_workers(self, *, before: float) -> list[str]:
        """Forget the workers that left or were lost before ``before`` (epoch
        seconds), except any that still holds an open attempt; returns their
        names. Task history keeps the names."""

    @abstractmethod
    async def connected_workers(self) -> list[str]:
        """Names of the workers recorded as connected."""

    @abstractmethod
    async def tasks_ahead(
        self, task_id: str, priority: int, queues: Sequence[str], limit: int
    ) -> list[Amounts]:
        """What the available tasks of ``queues`` that a claim would consider
        before ``task_id`` (of ``priority``) ask for, in ``claims.ORDER``, at
        most ``limit`` (the pending reason's replay of the claims)."""

    @abstractmethod
    async def list_workers(self, name: str | None = None) -> list[dict[str, Any]]:
        """Worker documents (all, or the one named) with what each runs."""

    @abstractmethod
    async def append_log(
        self, task_id: str, execution_key: str, stream: str, data: bytes, *, worker: str
    ) -> None:
        """Append output of the current attempt (kept up to a byte bound per
        attempt, oldest dropped); refused like a report on a stale attempt."""

    @abstractmethod
    async def read_logs(
        self, task_id: str, *, attempt: int | None = None, stream: str | None = None
    ) -> dict[str, Any]:
        """The kept output of an attempt (the latest by default), by stream."""

    # --- tokens -----------------------------------------------------------------------

    @abstractmethod
    async def create_token(self, name: str, role: Role) -> str:
        """A new token for ``name`` (only its hash is kept); ``Conflict`` if
        the name is taken."""

    @abstractmethod
    async def list_tokens(self) -> list[TokenInfo]:
        """Every token's name, role and dates (never the secret)."""

    @abstractmethod
    async def revoke_token(self, name: str) -> None:
        """Revoke the token; ``NotFound`` for an unknown name."""

    @abstractmethod
    async def verify_token(self, token: str) -> Caller | None:
        """The caller a live token stands for, or None."""

    @abstractmethod
    async def token_mark(self) -> tuple[float, ...]:
        """A cheap summary of the tokens table that changes whenever a token
        is added, revoked or deleted (by any process: ``banyan-server token
        revoke`` writes the database directly)."""

    @abstractmethod
    async def live_token_names(self, names: Collection[str]) -> set[str]:
        """Of ``names``, those of tokens that exist and are not revoked."""

    # --- statistics -----------------------------------------------------------------

    @abstractmethod
    async def statistics(self) -> dict[str, Any]:
        """``GET /stats`` but the workers: ``{"tasks": {"total", "by_state",
        "by_queue", "oldest_available": {queue: epoch s}}, "throughput": {"1m",
        "5m", "15m"}, "wait_time_s": {"p50", "p90", "p99", "count"},
        "run_time_s": {...}}``, cheap however many tasks there are."""

    @abstractmethod
    async def tree_statistics(self, task_id: str) -> dict[str, Any]:
        """``GET /tasks/{id}/stats``: counts and estimated remaining runtime over
        the task and everything downstream of it; ``NotFound`` for an unknown id."""
