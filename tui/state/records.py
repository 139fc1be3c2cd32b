"""The TUI's records of tasks and workers, built from the documents ``GET
/tasks`` and ``GET /workers`` return, and the clock helpers they need."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, cast

from banyan.client.format import short_duration, status_of
from banyan.dates import parse_date
from banyan.documents import ExplainedTaskDoc, RunningDoc, TaskDoc, WorkerDoc

FINAL_STATES = frozenset({"terminated", "cancelled"})


ACTIVE_STATES = frozenset({"running", "pending_cancellation"})


# "42s", "5m": an age in its largest unit (one rule for the CLI and the TUI).
short_age = short_duration


def created_from_id(task_id: str) -> float:
    """Ids start with their creation second (8 hex digits)."""
    try:
        return float(int(task_id[:8], 16))
    except ValueError:
        return 0.0


@lru_cache(maxsize=65_536)
def _parse_text(text: str) -> float | None:
    try:
        return parse_date(text)
    except ValueError:
        return None


def parse_time(value: Any) -> float | None:
    """Epoch seconds from an API date (a string) or a number; None if unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return _parse_text(value)
    return None


def clock_text(seconds: float | None) -> str:
    """An elapsed time that visibly ticks: ``"0:42"``, ``"59:59"``, ``"3h05"``, ``"12d"``
    (at most 5 characters); ``""`` for None."""
    if seconds is None:
        return ""
    whole = max(0, int(seconds))
    if whole < 3600:
        return f"{whole // 60}:{whole % 60:02d}"
    if whole < 100 * 3600:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}"
    return f"{whole // 86400}d"


def run_time(task: Task, now: float) -> float | None:
    """How long the task's current attempt has run (to ``now`` while it runs), if known."""
    if task.started is None:
        return None
    if task.state in ACTIVE_STATES:
        return max(0.0, now - task.started)
    if task.ended is not None and task.state in FINAL_STATES:
        return max(0.0, task.ended - task.started)
    return None


def short_id(task_id: str) -> str:
    """A task's id as the TUI shows it: whole, so that ``banyan`` takes it as
    it is. A shorter form would not do: the last digits (the old display) are
    no prefix the CLI can resolve and may collide, and ids are time-ordered,
    so the leading digits of tasks submitted together are shared up to the
    18th (``banyan.ids``) and a short leading prefix is ambiguous."""
    return task_id


@dataclass(slots=True)
class Task:
    id: str
    name: str | None = None
    command: str | None = None
    state: str = "inactive"
    queue: str = "default"
    priority: int = 0
    owner: str | None = None
    created: float = 0.0
    updated: float = 0.0
    # The snapshot's ``_updated``: a replayed event older than it is stale.
    snapshot_updated: float = 0.0
    worker: str | None = None
    attempt: int = 0
    exit_status: str | None = None
    exit_code: int | None = None
    started: float | None = None
    ended: float | None = None
    percent: float | None = None
    message: str | None = None
    retry_count: int = 0
    max_retry_count: int = 0
    continuations: tuple[str, ...] = ()
    group: bool = False
    resources: dict[str, Any] | None = None
    job: str | None = None  # the job (one POST /tasks) it was submitted in
    # Why it waits, as the server said when it was loaded (``_pending_reason``).
    reason: str | None = None

    @property
    def status(self) -> str:
        return status_of(self.state, self.exit_status)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.command:
            return self.command
        return "(group)" if self.group else "-"


def task_from_doc(doc: TaskDoc) -> Task:
    """A task as ``GET /tasks`` returns it (any projection that keeps the basics)."""
    task_id = str(doc["_id"])
    execution = doc.get("execution") or {}
    progress = execution.get("progress") or {}
    created = parse_time(doc.get("_created"))
    updated = parse_time(doc.get("_updated")) or 0.0
    command = doc.get("command")
    percent = progress.get("percent") if isinstance(progress, Mapping) else None
    return Task(
        id=task_id,
        name=doc.get("name"),
        command=command[:500] if isinstance(command, str) else None,
        state=str(doc.get("state", "inactive")),
        queue=str(doc.get("queue") or "default"),
        priority=int(doc.get("priority") or 0),
        owner=doc.get("owner"),
        created=created if created is not None else created_from_id(task_id),
        updated=updated,
        snapshot_updated=updated,
        worker=execution.get("worker"),
        attempt=int(execution.get("attempt") or 0),
        exit_status=execution.get("exit_status"),
        exit_code=execution.get("exit_code"),
        started=parse_time(execution.get("time_started")),
        ended=parse_time(execution.get("time_terminated")),
        percent=float(percent) if isinstance(percent, int | float) else None,
        message=progress.get("message") if isinstance(progress, Mapping) else None,
        retry_count=int(doc.get("retry_count") or 0),
        max_retry_count=int(doc.get("max_retry_count") or 0),
        continuations=tuple(doc.get("continuations") or ()),
        group="command" in doc and command is None,
        resources=doc.get("requested_resources"),
        job=doc.get("job"),
        reason=(cast(ExplainedTaskDoc, doc).get("_pending_reason") or {}).get("reason"),
    )


@dataclass(slots=True)
class Worker:
    name: str
    state: str = "idle"
    host: str | None = None
    queues: tuple[str, ...] = ()
    capacity: dict[str, Any] = field(default_factory=dict)
    free: dict[str, Any] = field(default_factory=dict)
    running: list[RunningDoc] = field(default_factory=list)
    last_heartbeat: float | None = None


def worker_from_doc(doc: WorkerDoc, *, now: float) -> Worker:
    """A worker as ``GET /workers`` returns it; the heartbeat is placed on our
    clock from ``last_heartbeat_age_s`` (no skew between the two clocks)."""
    age = doc.get("last_heartbeat_age_s")
    beat = (
        now - float(age) if isinstance(age, int | float) else parse_time(doc.get("last_heartbeat"))
    )
    return Worker(
        name=str(doc["name"]),
        state=str(doc.get("state", "idle")),
        host=doc.get("host"),
        queues=tuple(doc.get("queues") or ()),
        capacity=dict(doc.get("capacity") or {}),
        free=dict(doc.get("free") or {}),
        running=list(doc.get("running") or []),
        last_heartbeat=beat,
    )


def cancellable(tasks: Sequence[Task]) -> list[Task]:
    return [t for t in tasks if not t.final]


def retryable(tasks: Sequence[Task]) -> list[Task]:
    """A failed or cancelled task may run again; one that succeeded may not."""
    return [t for t in tasks if t.status in ("failed", "cancelled")]
