"""The typed messages the TUI's workers post when network calls come back
(widgets never wait on the network; they react to these)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from banyan.documents import TaskDoc, WorkerDoc
from tui.source import Snapshot


@dataclass
class FeedConnected(Message):
    """The feed's ``feed.hello``: ``seq`` is the server's head, ``since`` what we asked for."""

    seq: int
    since: int | None


@dataclass
class FeedLost(Message):
    error: str


@dataclass
class FeedResync(Message):
    """The server no longer holds the events after ``since``: reload everything."""


@dataclass
class SnapshotLoaded(Message):
    snapshot: Snapshot


@dataclass
class SnapshotFailed(Message):
    error: str


@dataclass
class WorkersLoaded(Message):
    workers: list[WorkerDoc]


@dataclass
class ReasonsLoaded(Message):
    asked: list[str]  # the waiting tasks asked about
    reasons: dict[str, str]  # why each waits (missing: it no longer waits)


@dataclass
class StatsLoaded(Message):
    stats: dict[str, Any] | None  # None: the server has no /stats


@dataclass
class TreeLoaded(Message):
    root: str
    tasks: dict[str, TaskDoc]
    error: str | None = None


@dataclass
class DetailLoaded(Message):
    task_id: str
    task: TaskDoc | None
    history: list[dict[str, Any]]
    usage: list[dict[str, Any]]
    error: str | None = None


@dataclass
class LogsLoaded(Message):
    task_id: str
    logs: dict[str, Any]


@dataclass
class ActionDone(Message):
    """A change the user asked for went through (or did not: ``error``)."""

    what: str
    error: str | None = None


@dataclass
class OpenDetail(Message):
    task_id: str


@dataclass
class SelectionChanged(Message):
    """The task under the cursor or the multi-selection changed."""
