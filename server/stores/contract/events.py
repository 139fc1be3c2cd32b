"""The ``Store`` contract for the event log: read after a seq, the newest and
oldest seq, pruning, and the callback that runs after every commit."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any


class EventStore(ABC):
    """The stored events the feed and the event hub read."""

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
