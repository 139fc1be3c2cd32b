"""The documents the API returns, typed once: a task as ``GET /tasks`` and
``GET /tasks/{id}`` return it, and a worker as ``GET /workers`` does.

They are ``TypedDict``\\ s, not models: what comes off the wire stays a plain
dict (cheap for a hundred thousand tasks in the TUI), and every key is
optional (``total=False``) because ``projection`` may leave any of them out.
The server's rows (``server/sqlite/rows.py`` ``row_to_doc``, rendered by
``server/render.py``) have exactly these keys.

``task_document`` builds a whole task document with the defaults of
``banyan.models.TaskCreate``, so a fake server (the TUI's ``FakeSource``,
tests) never spells a task out by hand: a new field with a default appears
in every fake document by itself.
"""

from __future__ import annotations

from typing import Any, TypedDict, cast


class ProgressDoc(TypedDict, total=False):
    """What ``banyan progress`` last reported from inside the task."""

    percent: float
    message: str | None


class ExecutionDoc(TypedDict, total=False):
    """A task's current attempt (``None`` before its first)."""

    attempt: int
    worker: str | None
    exit_status: str | None
    exit_code: int | None
    time_started: str | None
    time_terminated: str | None
    progress: ProgressDoc | None
    queued: bool  # a worker holds the attempt, its process not started yet (prefetch)


class TaskDoc(TypedDict, total=False):
    """A task (SPEC §3). Dates are strings in the server's ``date_format``."""

    _id: str
    name: str | None
    command: str | None  # None: a group task
    state: str
    continuations: list[str]
    requested_resources: dict[str, Any]
    queue: str
    priority: int
    max_retry_count: int
    retry_count: int
    pending_dependency_count: int
    run_when: str  # success, finished or failure (banyan.dependencies)
    max_termination_time: float
    estimated_runtime: float | None
    time_limit: float | None  # seconds an attempt may run; None: no limit
    not_before: str | None  # a date: not claimed before then
    max_abandon_count: int
    abandon_count: int  # server-managed: attempts whose worker died or was stopped
    env: dict[str, str] | None
    cwd: str | None
    owner: str | None
    job: str | None  # the job (one POST /tasks) it was submitted in
    execution: ExecutionDoc | None
    _created: str
    _updated: str
    _etag: str
    _links: dict[str, Any]


class ExplainedTaskDoc(TaskDoc, total=False):
    """A task as ``GET /tasks?reasons=1`` lists it: with ``{"code", "reason"}``,
    why it is not running (``/tasks/{id}/pending_reason``)."""

    _pending_reason: dict[str, Any]


class RunningDoc(TypedDict, total=False):
    """One attempt a worker runs, in ``WorkerDoc.running``."""

    task: str
    name: str | None
    state: str
    requested_resources: dict[str, Any]
    attempt: int
    time_started: str | None


class WorkerDoc(TypedDict, total=False):
    """A worker (SPEC §7): its capacity, what is free, what it runs."""

    _id: str
    name: str
    state: str  # idle, busy, draining, disconnected, lost, left
    host: str | None
    pid: int | None
    containment: str | None  # cgroup, subreaper or group (its hello); None: not said
    queues: list[str]
    capacity: dict[str, Any]
    free: dict[str, Any]
    running: list[RunningDoc]
    queued: list[str]  # tasks it holds prefetched, not started yet (issue 12)
    last_heartbeat: str | None
    last_heartbeat_age_s: float
    connected: str | None
    left: str | None  # when it left or was declared lost
    left_age_s: float | None
    responsive: bool  # False: not heard from for two heartbeat intervals (not lost yet)
    remaining_s: float | None  # its remaining lifetime (--time-limit); None: none


TASK_KEYS: tuple[str, ...] = tuple(TaskDoc.__annotations__)
WORKER_KEYS: tuple[str, ...] = tuple(WorkerDoc.__annotations__)


def task_document(
    task_id: str, *, created: str, updated: str | None = None, **fields: Any
) -> TaskDoc:
    """A whole task document: ``TaskCreate``'s defaults, the server-managed
    fields of a new task, then ``fields`` (which may set any key of ``TaskDoc``)."""
    doc: dict[str, Any] = {"_id": task_id}
    from banyan.models import TaskCreate  # here: reading documents needs no pydantic

    doc.update(TaskCreate.model_construct().model_dump(mode="json", exclude={"id"}))
    doc.update(
        retry_count=0,
        abandon_count=0,
        pending_dependency_count=0,
        owner=None,
        job=task_id,  # a task submitted alone is a job of one, named by its id
        execution=None,
        _created=created,
        _updated=updated if updated is not None else created,
    )
    unknown = set(fields) - set(TASK_KEYS)
    if unknown:
        raise TypeError(f"not a task field: {', '.join(sorted(unknown))}")
    doc.update(fields)
    return cast(TaskDoc, doc)
