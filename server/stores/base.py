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

The methods are declared by area in ``server/stores/contract/`` (tasks,
attempts, events, workers, tokens); :class:`Store` composes them and adds
the lifetime.
"""

from __future__ import annotations

from abc import abstractmethod

from server.stores.contract.attempts import AttemptStore
from server.stores.contract.events import EventStore
from server.stores.contract.tasks import TaskStore
from server.stores.contract.tokens import TokenStore
from server.stores.contract.values import (
    ClaimedAttempt,
    CreatedTask,
    Health,
    ItemResult,
    Joined,
    Page,
    Query,
    TokenInfo,
    WorkerIdentity,
)
from server.stores.contract.workers import WorkerStore

__all__ = [
    "AttemptStore",
    "ClaimedAttempt",
    "CreatedTask",
    "EventStore",
    "Health",
    "ItemResult",
    "Joined",
    "Page",
    "Query",
    "Store",
    "TaskStore",
    "TokenInfo",
    "TokenStore",
    "WorkerIdentity",
    "WorkerStore",
]


class Store(TaskStore, AttemptStore, EventStore, WorkerStore, TokenStore):
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
