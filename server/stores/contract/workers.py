"""The ``Store`` contract for workers and their output: join (with the
attempts it resumes), identity, leave, heartbeats, pruning, listing, what is
ahead of a task in its queues, and the attempts' logs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from banyan.resources import Amounts
from server.stores.contract.values import Joined, WorkerIdentity


class WorkerStore(ABC):
    """Workers and the output of their attempts."""

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
        containment: str | None = None,
    ) -> Joined:
        """Record the worker as connected, with ``secret`` (a digest) as the
        proof its process carries from now on, and ``containment`` (how it
        keeps tasks' processes, from its hello; None: it did not say). Only for the ``same_process``
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
