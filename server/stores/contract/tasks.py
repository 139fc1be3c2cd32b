"""The ``Store`` contract for tasks and jobs: create (once, under an
idempotency key), read, find, change (one or in bulk), continuation edges,
history, and the statistics over them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from banyan.models import BulkPatchItem, ContinuationEdit, TaskCreate, TaskPatch
from banyan.tokens import Caller
from server.domain.idempotency import Answer, Submission
from server.stores.contract.values import CreatedTask, ItemResult, Page, Query


class TaskStore(ABC):
    """Tasks, jobs and their statistics."""

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
