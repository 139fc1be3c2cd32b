"""The ``Store`` contract for attempts, which the worker gateway drives:
claims (and prefetched, queued attempts), the end of an attempt, progress,
abandonment, and the memory samples of running attempts."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from banyan.models import MemoryUsage
from banyan.resources import Resources
from banyan.states import Actor
from banyan.tokens import Caller
from server.stores.contract.values import ClaimedAttempt, Page, Query


class AttemptStore(ABC):
    """Attempts (the worker gateway drives these) and memory samples."""

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
