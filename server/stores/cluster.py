"""What a store that several servers share adds to ``Store`` (issue 14):
which server each worker is connected to, which servers are alive, and a
loss of silent workers that exactly one server records.

On SQLite one server owns the database, and the gateway judges its workers'
silences in memory (``server.gateway``). When several servers serve one
queue (PostgreSQL), a server only knows the sessions it holds, so:

- every server records itself alive (``beat``) a few times per
  ``worker_timeout_s``, with what it knows of its own sessions (draining,
  lifetime), and learns which of them the database has since given to
  another server or declared lost (they are closed);
- a join records the server the worker is connected to (the store's own
  ``server_id``, in the join's transaction);
- ``declare_lost`` is one atomic change: it marks lost the workers this
  server found silent for ``worker_timeout_s`` and that are still connected
  to it, plus the workers of servers that stopped beating (dead, or shut
  down) whose last heartbeat is older than ``worker_timeout_s``; rows another
  transaction holds are skipped, so each loss is recorded once, by one
  server, with its attempts abandoned and its ``worker.lost`` event;
- ``connected_elsewhere`` is the cluster's view of the workers other live
  servers hold (``/stats``, ``/workers`` and the pending reasons use it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class SessionMark:
    """What a server tells the database about one worker it holds."""

    draining: bool = False
    deadline: float | None = None  # epoch seconds its lifetime ends (``--time-limit``)


@dataclass(frozen=True)
class LostWorker:
    """A worker one ``declare_lost`` call recorded as lost, and the tasks of
    the attempts that were abandoned with it."""

    name: str
    abandoned: list[str]


@dataclass(frozen=True)
class RemoteWorker:
    """A worker connected to another live server, as the database has it."""

    name: str
    server: str
    last_seen: float  # epoch seconds; refreshed every heartbeat interval
    draining: bool
    deadline: float | None


class SharedStore(ABC):
    """The part of a ``Store`` that lets several servers share it."""

    @property
    @abstractmethod
    def server_id(self) -> str:
        """This server's id in the database (new for every process)."""

    @abstractmethod
    async def beat(self, sessions: Mapping[str, SessionMark]) -> set[str]:
        """Record this server alive now and, for each worker it holds, the
        marks given; returns the names of ``sessions`` the database no
        longer has connected to this server (lost, or joined elsewhere)."""

    @abstractmethod
    async def declare_lost(
        self,
        *,
        silent: Collection[str],
        worker_timeout_s: float,
        now: float,
        server_silence_s: float | None = None,
    ) -> list[LostWorker]:
        """Mark lost, in one transaction, the workers of ``silent`` (this
        server's, silent for ``worker_timeout_s``) still connected to this
        server, and the connected workers of servers that have not beaten
        for ``server_silence_s`` (default ``worker_timeout_s``; or never
        did) last heard before ``now - worker_timeout_s``; abandon their
        attempts and emit ``worker.lost`` for each. Returns only those THIS
        call marked."""

    @abstractmethod
    async def connected_elsewhere(self, *, alive_s: float) -> dict[str, RemoteWorker]:
        """The workers connected to other servers that beat within ``alive_s``."""

    @abstractmethod
    async def retire(self) -> None:
        """This server stops: forget its row, so the others take over its
        workers (after their silence) without waiting for it to age."""
