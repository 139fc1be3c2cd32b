"""The values the ``Store`` contract takes and returns besides documents: a
parsed query and a page, bulk and create results, a claimed attempt, a
worker's join and identity, token info and health."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, NotRequired, TypedDict

from banyan.query import Node
from banyan.tokens import Role


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
