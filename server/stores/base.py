"""The narrow async interface the server talks to. SQL lives behind it (see
``server/sqlite``); a second backend is a new implementation of this class.

Documents come back as plain dicts with times as epoch seconds; the views
format them. Every method that changes something appends its events in the
same transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from banyan.models import BulkPatchItem, ContinuationEdit, MemoryUsage, TaskCreate, TaskPatch
from banyan.query import Node
from banyan.resources import Resources
from banyan.states import Actor
from banyan.tokens import Caller, Role


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
    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def health(self) -> Health: ...

    # tasks
    @abstractmethod
    async def create_tasks(
        self, items: Sequence[TaskCreate], caller: Caller
    ) -> list[dict[str, Any]]: ...

    @abstractmethod
    async def get_task(self, task_id: str) -> dict[str, Any]: ...

    @abstractmethod
    async def find_tasks(self, query: Query) -> Page: ...

    @abstractmethod
    async def update_task(
        self, task_id: str, patch: TaskPatch, caller: Caller, *, if_match: str | None = None
    ) -> dict[str, Any]: ...

    @abstractmethod
    async def update_tasks(
        self, items: Sequence[BulkPatchItem], caller: Caller
    ) -> list[ItemResult]: ...

    @abstractmethod
    async def edit_continuations(
        self, edits: Sequence[ContinuationEdit], caller: Caller, *, add: bool
    ) -> None: ...

    @abstractmethod
    async def history(self, task_id: str) -> list[dict[str, Any]]: ...

    # attempts (the worker gateway drives these)
    @abstractmethod
    async def claim(
        self, *, worker: str, token: str, free: Resources, queues: Sequence[str], limit: int
    ) -> list[dict[str, Any]]: ...

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
    ) -> dict[str, Any]: ...

    @abstractmethod
    async def report_progress(
        self, task_id: str, execution_key: str, progress: dict[str, Any], caller: Caller
    ) -> None: ...

    @abstractmethod
    async def abandon_worker(self, worker: str) -> list[str]: ...

    # memory usage
    @abstractmethod
    async def add_memory_usage(self, records: Sequence[MemoryUsage], caller: Caller) -> int: ...

    @abstractmethod
    async def find_memory_usage(self, query: Query) -> Page: ...

    # events
    @abstractmethod
    async def events_since(self, seq: int, *, limit: int = 1000) -> list[dict[str, Any]]: ...

    @abstractmethod
    async def last_seq(self) -> int: ...

    @abstractmethod
    async def oldest_seq(self) -> int:
        """The oldest retained event's seq (0 when there are none)."""

    @abstractmethod
    async def prune_events(self, *, keep: int) -> int:
        """Delete all but the newest ``keep`` events; returns how many went."""

    @abstractmethod
    def add_commit_listener(self, callback: Callable[[], None]) -> None:
        """``callback`` runs after every commit (the event hub reads from there)."""

    # workers and their output
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
    ) -> tuple[list[str], list[str]]: ...

    @abstractmethod
    async def leave_worker(self, name: str, *, lost: bool) -> list[str]: ...

    @abstractmethod
    async def touch_workers(self, names: Sequence[str]) -> None: ...

    @abstractmethod
    async def connected_workers(self) -> list[str]: ...

    @abstractmethod
    async def list_workers(self, name: str | None = None) -> list[dict[str, Any]]: ...

    @abstractmethod
    async def append_log(
        self, task_id: str, execution_key: str, stream: str, data: bytes, *, worker: str
    ) -> None: ...

    @abstractmethod
    async def read_logs(
        self, task_id: str, *, attempt: int | None = None, stream: str | None = None
    ) -> dict[str, Any]: ...

    # tokens
    @abstractmethod
    async def create_token(self, name: str, role: Role) -> str: ...

    @abstractmethod
    async def list_tokens(self) -> list[TokenInfo]: ...

    @abstractmethod
    async def revoke_token(self, name: str) -> None: ...

    @abstractmethod
    async def verify_token(self, token: str) -> Caller | None: ...

    # --- statistics ---
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
