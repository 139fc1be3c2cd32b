"""The TUI's pure state: what it knows about tasks, workers and queues, how an
event feed frame changes that, and everything derived from it for display:
state → glyph and style, the filter language, sorting, which rows the task
table should hold (and how to get there from what it holds), continuation
trees with their summaries, and queue and worker figures.

Nothing here does I/O or imports Textual; every function takes ``now`` when
it needs a clock, so tests and snapshots are deterministic.
"""

from __future__ import annotations

import heapq
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from banyan.dates import parse_date

FINAL_STATES = frozenset({"terminated", "cancelled"})
ACTIVE_STATES = frozenset({"running", "pending_cancellation"})
USAGE_POINTS = 120  # RSS samples kept per task for the sparkline
USAGE_TASKS = 2_000  # tasks whose samples are kept (the most recently sampled)
RATE_WINDOW_S = 60  # "done/1m" per queue, from the feed
MAX_TREE_NODES = 5_000


# --- when ---------------------------------------------------------------------


def created_from_id(task_id: str) -> float:
    """Ids start with their creation second (8 hex digits)."""
    try:
        return float(int(task_id[:8], 16))
    except ValueError:
        return 0.0


@lru_cache(maxsize=65_536)
def _parse_text(text: str) -> float | None:
    try:
        return parse_date(text)
    except ValueError:
        return None


def parse_time(value: Any) -> float | None:
    """Epoch seconds from an API date (a string) or a number; None if unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return _parse_text(value)
    return None


def short_age(seconds: float | None) -> str:
    """``"42s"``, ``"5m"``, ``"3h"``, ``"2d"``: an age in its largest unit."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for suffix, unit in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= unit:
            return f"{int(seconds // unit)}{suffix}"
    return f"{int(seconds)}s"


def short_id(task_id: str) -> str:
    """The last 8 hex digits: the per-process counter, unique in practice."""
    return task_id[-8:]


# --- records ------------------------------------------------------------------


@dataclass(slots=True)
class Task:
    id: str
    name: str | None = None
    command: str | None = None
    state: str = "inactive"
    queue: str = "default"
    priority: int = 0
    owner: str | None = None
    created: float = 0.0
    updated: float = 0.0
    # The snapshot's ``_updated``: a replayed event older than it is stale.
    snapshot_updated: float = 0.0
    worker: str | None = None
    attempt: int = 0
    exit_status: str | None = None
    exit_code: int | None = None
    started: float | None = None
    ended: float | None = None
    percent: float | None = None
    message: str | None = None
    retry_count: int = 0
    max_retry_count: int = 0
    continuations: tuple[str, ...] = ()
    group: bool = False
    resources: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        return status_of(self.state, self.exit_status)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.command:
            return self.command
        return "(group)" if self.group else "-"


def task_from_doc(doc: Mapping[str, Any]) -> Task:
    """A task as ``GET /tasks`` returns it (any projection that keeps the basics)."""
    task_id = str(doc["_id"])
    execution = doc.get("execution") or {}
    progress = execution.get("progress") or {}
    created = parse_time(doc.get("_created"))
    updated = parse_time(doc.get("_updated")) or 0.0
    command = doc.get("command")
    percent = progress.get("percent") if isinstance(progress, Mapping) else None
    return Task(
        id=task_id,
        name=doc.get("name"),
        command=command[:500] if isinstance(command, str) else None,
        state=str(doc.get("state", "inactive")),
        queue=str(doc.get("queue") or "default"),
        priority=int(doc.get("priority") or 0),
        owner=doc.get("owner"),
        created=created if created is not None else created_from_id(task_id),
        updated=updated,
        snapshot_updated=updated,
        worker=execution.get("worker"),
        attempt=int(execution.get("attempt") or 0),
        exit_status=execution.get("exit_status"),
        exit_code=execution.get("exit_code"),
        started=parse_time(execution.get("time_started")),
        ended=parse_time(execution.get("time_terminated")),
        percent=float(percent) if isinstance(percent, int | float) else None,
        message=progress.get("message") if isinstance(progress, Mapping) else None,
        retry_count=int(doc.get("retry_count") or 0),
        max_retry_count=int(doc.get("max_retry_count") or 0),
        continuations=tuple(doc.get("continuations") or ()),
        group="command" in doc and command is None,
        resources=doc.get("requested_resources"),
    )


@dataclass(slots=True)
class Worker:
    name: str
    state: str = "idle"
    host: str | None = None
    queues: tuple[str, ...] = ()
    capacity: dict[str, Any] = field(default_factory=dict)
    free: dict[str, Any] = field(default_factory=dict)
    running: list[dict[str, Any]] = field(default_factory=list)
    last_heartbeat: float | None = None


def worker_from_doc(doc: Mapping[str, Any], *, now: float) -> Worker:
    """A worker as ``GET /workers`` returns it; the heartbeat is placed on our
    clock from ``last_heartbeat_age_s`` (no skew between the two clocks)."""
    age = doc.get("last_heartbeat_age_s")
    beat = (
        now - float(age) if isinstance(age, int | float) else parse_time(doc.get("last_heartbeat"))
    )
    return Worker(
        name=str(doc["name"]),
        state=str(doc.get("state", "idle")),
        host=doc.get("host"),
        queues=tuple(doc.get("queues") or ()),
        capacity=dict(doc.get("capacity") or {}),
        free=dict(doc.get("free") or {}),
        running=list(doc.get("running") or []),
        last_heartbeat=beat,
    )


# --- state → glyph and style --------------------------------------------------

# status: the state, with a terminated task split by its exit status.
STATUSES = ("running", "cancelling", "available", "inactive", "failed", "cancelled", "success")
STATUS_LOOK: dict[str, tuple[str, str, str]] = {
    # status: (glyph, short label, style)
    "inactive": ("◌", "inactive", "dim"),
    "available": ("○", "available", "cyan"),
    "running": ("▶", "running", "bold yellow"),
    "cancelling": ("◍", "cancelling", "magenta"),
    "success": ("✔", "success", "green"),
    "failed": ("✘", "failed", "bold red"),
    "cancelled": ("⊘", "cancelled", "red"),
}
STATUS_RANK = {status: rank for rank, status in enumerate(STATUSES)}


def status_of(state: str, exit_status: str | None = None) -> str:
    if state == "terminated":
        return "success" if exit_status in (None, "success") else "failed"
    if state == "pending_cancellation":
        return "cancelling"
    return state if state in STATUS_LOOK else "inactive"


def look(status: str) -> tuple[str, str, str]:
    return STATUS_LOOK.get(status, ("?", status, ""))


def load_style(fraction: float) -> str:
    """Colour of a load bar: green, then yellow from 70 %, red from 90 %."""
    if fraction >= 0.9:
        return "red"
    if fraction >= 0.7:
        return "yellow"
    return "green"


def bar(fraction: float, width: int) -> str:
    """``"████▌   "``: a bar ``width`` cells wide, in eighths."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + ("" if part == 0 else " ▏▎▍▌▋▊▉"[part])
    return text.ljust(width)


def heartbeat_level(worker: Worker, now: float, interval_s: float) -> str:
    """``"ok"``, ``"warn"`` (silent past the heartbeat interval, with half an
    interval's grace for jitter) or ``"error"`` (lost)."""
    if worker.state == "lost":
        return "error"
    if worker.state == "left" or worker.last_heartbeat is None:
        return "ok" if worker.state == "left" else "warn"
    return "warn" if now - worker.last_heartbeat > interval_s * 1.5 else "ok"


# --- the model and the feed ---------------------------------------------------


@dataclass
class Changes:
    """What one batch of frames touched."""

    tasks: set[str] = field(default_factory=set)
    workers: set[str] = field(default_factory=set)
    queues: bool = False
    usage: set[str] = field(default_factory=set)
    workers_stale: bool = False  # loads changed: refetch /workers
    applied: int = 0

    def __bool__(self) -> bool:
        return bool(self.tasks or self.workers or self.queues or self.usage)


@dataclass
class Model:
    tasks: dict[str, Task] = field(default_factory=dict)
    workers: dict[str, Worker] = field(default_factory=dict)
    parents: dict[str, set[str]] = field(default_factory=dict)
    queue_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    counts_from_server: bool = False
    oldest_available: dict[str, float] = field(default_factory=dict)
    throughput: dict[str, int] | None = None
    server_total: int | None = None
    usage: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)
    done: dict[str, deque[tuple[int, int]]] = field(default_factory=dict)
    active: set[str] = field(default_factory=set)  # running or being cancelled
    seq: int = 0

    @classmethod
    def from_snapshot(
        cls,
        tasks: Iterable[Mapping[str, Any]],
        workers: Iterable[Mapping[str, Any]],
        stats: Mapping[str, Any] | None,
        *,
        now: float,
        server_total: int | None = None,
    ) -> Model:
        model = cls(server_total=server_total)
        for doc in tasks:
            model.add_task(task_from_doc(doc))
        for doc in workers:
            worker = worker_from_doc(doc, now=now)
            model.workers[worker.name] = worker
        model.set_stats(stats)
        return model

    def add_task(self, task: Task) -> None:
        self.tasks[task.id] = task
        self._track(task)
        for child in task.continuations:
            self.parents.setdefault(child, set()).add(task.id)

    def _track(self, task: Task) -> None:
        if task.state in ACTIVE_STATES:
            self.active.add(task.id)
        else:
            self.active.discard(task.id)

    def merge_docs(self, docs: Iterable[Mapping[str, Any]]) -> set[str]:
        """Tasks fetched on the side (a tree): added, or refreshed if newer."""
        touched = set()
        for doc in docs:
            task = task_from_doc(doc)
            known = self.tasks.get(task.id)
            if known is None or task.updated >= known.updated:
                self.add_task(task)
                touched.add(task.id)
        return touched

    def set_stats(self, stats: Mapping[str, Any] | None) -> None:
        """Counts from ``GET /stats``; without it, counted from the loaded tasks."""
        if stats is None:
            self.counts_from_server = False
            self.queue_counts = counts_from_tasks(self.tasks.values())
            self.oldest_available = {}
            self.throughput = None
            return
        figures = stats.get("tasks") or {}
        self.counts_from_server = True
        self.queue_counts = {
            str(q): {str(s): int(n) for s, n in counts.items()}
            for q, counts in (figures.get("by_queue") or {}).items()
        }
        self.oldest_available = {
            str(q): t
            for q, v in (figures.get("oldest_available") or {}).items()
            if (t := parse_time(v)) is not None
        }
        if isinstance(figures.get("total"), int):
            self.server_total = int(figures["total"])
        throughput = stats.get("throughput")
        self.throughput = dict(throughput) if isinstance(throughput, Mapping) else None

    def set_workers(self, docs: Iterable[Mapping[str, Any]], *, now: float) -> None:
        fresh = {}
        for doc in docs:
            worker = worker_from_doc(doc, now=now)
            known = self.workers.get(worker.name)
            # A heartbeat event newer than the listing wins.
            if known and known.last_heartbeat and worker.last_heartbeat:
                worker.last_heartbeat = max(known.last_heartbeat, worker.last_heartbeat)
            fresh[worker.name] = worker
        self.workers = fresh

    # --- applying frames ------------------------------------------------------

    def apply(self, frames: Iterable[Mapping[str, Any]]) -> Changes:
        changes = Changes()
        for frame in frames:
            seq = frame.get("seq")
            if isinstance(seq, int):
                self.seq = max(self.seq, seq)
            handler = _HANDLERS.get(str(frame.get("type")))
            if handler is None:
                continue
            data = frame.get("data") or {}
            ts = frame.get("timestamp")
            try:
                handler(self, data, float(ts) if isinstance(ts, int | float) else 0.0, changes)
            except (KeyError, TypeError, ValueError):
                continue  # a frame we cannot read (a newer server?) is skipped
            changes.applied += 1
        return changes

    def _count(self, queue: str, state: str, delta: int) -> None:
        counts = self.queue_counts.setdefault(queue, {})
        counts[state] = max(0, counts.get(state, 0) + delta)

    def _task_for(self, data: Mapping[str, Any], ts: float) -> Task:
        task_id = str(data["_id"])
        task = self.tasks.get(task_id)
        if task is None:
            task = Task(
                id=task_id,
                name=data.get("name"),
                queue=str(data.get("queue") or "default"),
                created=created_from_id(task_id) or ts,
            )
            self.add_task(task)
        return task

    def _on_created(self, data: Mapping[str, Any], ts: float, changes: Changes) -> None:
        known = str(data.get("_id")) in self.tasks
        task = self._task_for(data, ts)
        if known and ts < task.snapshot_updated:
            return
        task.name = data.get("name", task.name)
        task.state = str(data.get("state", task.state))
        task.queue = str(data.get("queue") or task.queue)
        task.priority = int(data.get("priority") or 0)
        task.owner = data.get("owner", task.owner)
        task.group = bool(data.get("group", False))
        task.created = task.created or ts
        self._track(task)
        task.updated = max(task.updated, ts)
        if not known:
            self._count(task.queue, task.state, +1)
            if self.server_total is not None:
                self.server_total += 1
            changes.queues = True
        changes.tasks.add(task.id)

    def _on_state(self, data: Mapping[str, Any], ts: float, changes: Changes) -> None:
        task = self._task_for(data, ts)
        previous = str(data.get("previous") or task.state)
        state = str(data.get("state"))
        self._count(str(data.get("queue") or task.queue), previous, -1)
        self._count(str(data.get("queue") or task.queue), state, +1)
        changes.queues = True
        if ts < task.snapshot_updated:
            return  # the snapshot already shows something newer
        task.state = state
        task.updated = max(task.updated, ts)
        self._track(task)
        if state == "running":
            task.worker = data.get("worker", task.worker)
            task.attempt = int(data.get("attempt") or task.attempt + 1)
            task.exit_status = task.exit_code = task.ended = None
            task.percent = None
            task.message = None
            task.started = ts
            changes.workers_stale = True
        if "exit_status" in data:
            task.exit_status = data["exit_status"]
            task.ended = ts
            changes.workers_stale = True
        if state == "available" and data.get("retry"):
            task.retry_count += 1
        if state in FINAL_STATES:
            self.usage.pop(task.id, None)
            if previous in ACTIVE_STATES:
                changes.workers_stale = True
        if state == "terminated":
            buckets = self.done.setdefault(task.queue, deque(maxlen=RATE_WINDOW_S + 1))
            second = int(ts)
            if buckets and buckets[-1][0] == second:
                buckets[-1] = (second, buckets[-1][1] + 1)
            else:
                buckets.append((second, 1))
        changes.tasks.add(task.id)

    def _on_progress(self, data: Mapping[str, Any], ts: float, changes: Changes) -> None:
        task = self.tasks.get(str(data.get("_id")))
        if task is None:
            return
        percent = data.get("percent")
        if isinstance(percent, int | float):
            task.percent = float(percent)
        if "message" in data:
            task.message = data["message"]
        changes.tasks.add(task.id)

    def _on_usage(self, data: Mapping[str, Any], ts: float, changes: Changes) -> None:
        task_id = str(data.get("_id"))
        rss = data.get("resident_memory_bytes")
        if not isinstance(rss, int):
            return
        when = parse_time(data.get("time")) or ts
        points = self.usage.pop(task_id, None) or deque(maxlen=USAGE_POINTS)
        points.append((when, rss))
        self.usage[task_id] = points  # re-inserted: most recently sampled last
        if len(self.usage) > USAGE_TASKS:
            del self.usage[next(iter(self.usage))]
        changes.usage.add(task_id)

    def _on_worker(self, data: Mapping[str, Any], ts: float, changes: Changes) -> None:
        name = str(data.get("name"))
        worker = self.workers.get(name)
        if worker is None:
            worker = self.workers[name] = Worker(name=name)
        worker.last_heartbeat = max(worker.last_heartbeat or 0.0, ts)
        if worker.state in ("lost", "left", "disconnected"):
            worker.state = "idle"
        changes.workers.add(name)

    def _on_joined(self, data: Mapping[str, Any], ts: float, changes: Changes) -> None:
        self._on_worker(data, ts, changes)
        worker = self.workers[str(data.get("name"))]
        worker.host = data.get("host", worker.host)
        worker.capacity = dict(data.get("capacity") or worker.capacity)
        worker.queues = tuple(data.get("queues") or worker.queues)
        worker.state = "busy" if worker.running else "idle"
        changes.workers_stale = True

    def _on_lost(self, data: Mapping[str, Any], ts: float, changes: Changes) -> None:
        self._gone(data, "lost", changes)

    def _on_left(self, data: Mapping[str, Any], ts: float, changes: Changes) -> None:
        self._gone(data, "left", changes)

    def _gone(self, data: Mapping[str, Any], state: str, changes: Changes) -> None:
        name = str(data.get("name"))
        worker = self.workers.setdefault(name, Worker(name=name))
        worker.state = state
        worker.running = []
        changes.workers.add(name)
        changes.workers_stale = True

    # --- derived ----------------------------------------------------------------

    def done_last_minute(self, queue: str, now: float) -> int:
        buckets = self.done.get(queue)
        if not buckets:
            return 0
        start = int(now) - RATE_WINDOW_S
        return sum(n for second, n in buckets if second > start)

    def running_by_worker(self) -> dict[str, int]:
        """How many tasks each worker runs, by our model (one pass)."""
        counts: dict[str, int] = {}
        for task_id in self.active:
            worker = self.tasks[task_id].worker
            if worker is not None:
                counts[worker] = counts.get(worker, 0) + 1
        return counts

    def running_on(self, worker: str) -> list[Task]:
        found = [t for t in self.tasks.values() if t.state in ACTIVE_STATES and t.worker == worker]
        return sorted(found, key=lambda t: t.started or 0.0)


_HANDLERS: dict[str, Callable[[Model, Mapping[str, Any], float, Changes], None]] = {
    "task.created": Model._on_created,
    "task.state": Model._on_state,
    "task.progress": Model._on_progress,
    "task.usage": Model._on_usage,
    "worker.joined": Model._on_joined,
    "worker.heartbeat": Model._on_worker,
    "worker.lost": Model._on_lost,
    "worker.left": Model._on_left,
}


def counts_from_tasks(tasks: Iterable[Task]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for task in tasks:
        by_state = counts.setdefault(task.queue, {})
        by_state[task.state] = by_state.get(task.state, 0) + 1
    return counts


# --- queues -------------------------------------------------------------------


@dataclass(frozen=True)
class QueueRow:
    name: str
    waiting: int  # inactive
    available: int
    running: int  # running + pending_cancellation
    terminated: int
    cancelled: int
    done_1m: int
    oldest_waiting_s: float | None


def queue_rows(model: Model, now: float) -> list[QueueRow]:
    oldest = dict(model.oldest_available)
    if not model.counts_from_server:
        for task in model.tasks.values():
            if task.state == "available":
                known = oldest.get(task.queue)
                oldest[task.queue] = task.created if known is None else min(known, task.created)
    names = sorted(set(model.queue_counts) | set(model.done))
    rows = []
    for name in names:
        c = model.queue_counts.get(name, {})
        since = oldest.get(name)
        rows.append(
            QueueRow(
                name=name,
                waiting=c.get("inactive", 0),
                available=c.get("available", 0),
                running=c.get("running", 0) + c.get("pending_cancellation", 0),
                terminated=c.get("terminated", 0),
                cancelled=c.get("cancelled", 0),
                done_1m=model.done_last_minute(name, now),
                oldest_waiting_s=None if since is None or not c.get("available") else now - since,
            )
        )
    return rows


# --- the filter language ------------------------------------------------------

STATUS_ALIASES: dict[str, frozenset[str]] = {
    "terminated": frozenset({"success", "failed"}),
    "pending_cancellation": frozenset({"cancelling"}),
    "done": frozenset({"success"}),
    "succeeded": frozenset({"success"}),
    "active": frozenset({"running", "cancelling"}),
    "waiting": frozenset({"inactive", "available"}),
    "pending": frozenset({"inactive", "available"}),
    "ended": frozenset({"success", "failed", "cancelled"}),
    "final": frozenset({"success", "failed", "cancelled"}),
    **{status: frozenset({status}) for status in STATUS_LOOK},
}
FILTER_FIELDS = {"state": "state", "s": "state", "queue": "queue", "q": "queue"}
FILTER_FIELDS |= {"name": "name", "n": "name", "owner": "owner", "worker": "worker", "id": "id"}
_TERM_RE = re.compile(r"^(-?)([a-z_]+)(:|~)(.*)$")


class FilterError(ValueError):
    """A filter the user typed that cannot be read; the message says why."""


@dataclass(frozen=True)
class Term:
    field: str
    op: str  # ":" any of the comma-separated values, "~" contains (no case)
    values: tuple[str, ...]
    negate: bool = False


@dataclass(frozen=True)
class Filter:
    terms: tuple[Term, ...] = ()
    text: str = ""

    def __bool__(self) -> bool:
        return bool(self.terms)


def parse_filter(text: str) -> Filter:
    """``state:running queue:gpu name~train``; ``-state:failed`` negates, commas
    give alternatives (``state:running,failed``), a bare word is ``name~word``."""
    terms = []
    for word in text.split():
        match = _TERM_RE.match(word)
        if match is None:
            terms.append(Term("name", "~", (word.lower(),)))
            continue
        negate, key, op, value = match.groups()
        name = FILTER_FIELDS.get(key)
        if name is None:
            known = ", ".join(sorted({"state", "queue", "name", "owner", "worker", "id"}))
            raise FilterError(f"unknown filter field {key!r}; use {known}")
        if not value:
            raise FilterError(f"{key}{op} needs a value, e.g. state:running")
        values = tuple(v for v in value.lower().split(",") if v)
        if name == "state":
            if op == "~":
                raise FilterError("state takes ':' (state:running), not '~'")
            unknown = [v for v in values if v not in STATUS_ALIASES]
            if unknown:
                raise FilterError(
                    f"unknown state {unknown[0]!r}; use {', '.join(STATUSES)}, "
                    "terminated, active, waiting or ended"
                )
            values = tuple(sorted(set().union(*(STATUS_ALIASES[v] for v in values))))
        terms.append(Term(name, op, values, negate=bool(negate)))
    return Filter(tuple(terms), text.strip())


def _field(task: Task, name: str) -> str:
    if name == "state":
        return task.status
    if name == "name":
        return f"{task.name or ''}\x00{task.command or ''}".lower()
    value = getattr(task, name)
    return "" if value is None else str(value).lower()


def _term_matches(term: Term, task: Task) -> bool:
    value = _field(task, term.field)
    if term.op == "~":
        hit = any(v in value for v in term.values)
    elif term.field == "name":
        hit = any(v in value.split("\x00") for v in term.values)
    elif term.field == "id":
        hit = any(value.startswith(v) or value.endswith(v) for v in term.values)
    else:
        hit = value in term.values
    return hit != term.negate


def matches(flt: Filter, task: Task) -> bool:
    return all(_term_matches(term, task) for term in flt.terms)


# --- sorting ------------------------------------------------------------------

SORT_KEYS = ("id", "name", "state", "queue", "priority", "updated")
VOLATILE_SORT_KEYS = frozenset({"state", "updated"})  # events move rows
SortKey = tuple[Any, ...]


@dataclass(frozen=True)
class Sort:
    key: str = "id"
    descending: bool = True

    @property
    def text(self) -> str:
        return ("-" if self.descending else "") + self.key


def parse_sort(text: str) -> Sort:
    """``name``, ``-priority`` (descending) or ``+state``."""
    word = text.strip().lower()
    descending = word.startswith("-")
    key = word.lstrip("+-") or "id"
    if key == "age":
        key, descending = "id", not descending
    if key not in SORT_KEYS:
        raise FilterError(f"cannot sort by {key!r}; use {', '.join(SORT_KEYS)} or age")
    return Sort(key, descending)


def sort_key(sort: Sort) -> Callable[[Task], SortKey]:
    if sort.key == "id":
        return lambda t: (t.id,)
    if sort.key == "name":
        return lambda t: (t.label.lower(), t.id)
    if sort.key == "state":
        return lambda t: (STATUS_RANK.get(t.status, 99), t.id)
    if sort.key == "queue":
        return lambda t: (t.queue, t.id)
    if sort.key == "priority":
        return lambda t: (t.priority, t.id)
    return lambda t: (t.updated, t.id)


# --- which rows the task table holds -------------------------------------------


@dataclass
class RowPlan:
    """How to take the table from the rows it holds to the ones it should."""

    remove: list[str] = field(default_factory=list)
    add: list[str] = field(default_factory=list)
    update: list[str] = field(default_factory=list)
    order: list[str] | None = None  # the full order, when rows must move
    reset: bool = False  # rebuild: a new filter or sort

    def __bool__(self) -> bool:
        return bool(self.remove or self.add or self.update or self.order or self.reset)


class TaskView:
    """The task table's rows: the first ``limit`` tasks matching ``filter`` in
    ``sort`` order. ``matching`` is kept up to date from each batch's changed
    ids, so neither a batch nor the "N of M" note rescans every task."""

    def __init__(self, *, limit: int = 1000) -> None:
        self.limit = limit
        self.filter = Filter()
        self.sort = Sort()
        self.matching: set[str] = set()
        self.shown: list[str] = []
        self.short = False  # fewer rows than could be shown: refill later

    def _ranked(self, model: Model, ids: Iterable[str], limit: int) -> list[str]:
        key = sort_key(self.sort)
        tasks = model.tasks

        def rank(task_id: str) -> SortKey:
            return key(tasks[task_id])

        pick = heapq.nlargest if self.sort.descending else heapq.nsmallest
        return pick(limit, ids, key=rank)

    def reset(self, model: Model) -> RowPlan:
        """Everything again (a new filter, sort or snapshot)."""
        if self.filter:
            self.matching = {i for i, t in model.tasks.items() if matches(self.filter, t)}
        else:
            self.matching = set(model.tasks)
        self.shown = self._ranked(model, self.matching, self.limit)
        self.short = False
        return RowPlan(add=list(self.shown), order=list(self.shown), reset=True)

    def changed(self, model: Model, ids: Iterable[str]) -> RowPlan:
        plan = RowPlan()
        shown = set(self.shown)
        gone: set[str] = set()
        candidates = []
        for task_id in ids:
            task = model.tasks.get(task_id)
            ok = task is not None and matches(self.filter, task)
            if ok:
                self.matching.add(task_id)
            else:
                self.matching.discard(task_id)
            if task_id in shown:
                if ok:
                    plan.update.append(task_id)
                else:
                    gone.add(task_id)
            elif ok:
                candidates.append(task_id)
        kept = [i for i in self.shown if i not in gone]
        moved = bool(plan.update) and self.sort.key in VOLATILE_SORT_KEYS
        if candidates or moved:
            merged = self._ranked(model, kept + candidates, len(kept) + len(candidates))
            wanted = merged[: self.limit]
            cut = set(merged[self.limit :])
            gone |= cut & shown
            fresh = set(candidates)
            plan.add = [i for i in wanted if i in fresh]
            appended = [i for i in kept if i not in cut] + plan.add
            if appended != wanted:
                plan.order = wanted
            self.shown = wanted
        else:
            self.shown = kept
        plan.remove = sorted(gone & shown)
        plan.update = [i for i in plan.update if i not in gone]
        self.short = len(self.shown) < min(self.limit, len(self.matching))
        return plan

    def refill(self, model: Model) -> RowPlan:
        """Top the table up after rows left it (they no longer match)."""
        wanted = self._ranked(model, self.matching, self.limit)
        shown = set(self.shown)
        fresh = set(wanted)
        plan = RowPlan(
            remove=[i for i in self.shown if i not in fresh],
            add=[i for i in wanted if i not in shown],
        )
        if [i for i in self.shown if i in fresh] + plan.add != wanted:
            plan.order = wanted
        self.shown = wanted
        self.short = False
        return plan

    def forget_missing(self, model: Model) -> None:
        self.matching &= set(model.tasks)


# --- continuation trees -------------------------------------------------------


@dataclass
class TreeNode:
    id: str
    children: list[TreeNode] = field(default_factory=list)
    repeat: bool = False  # shown above already (a task with several parents)
    missing: bool = False  # not loaded


def tree_root(model: Model, task_id: str) -> str:
    """The topmost ancestor known (first parent by id at each step; cycles stop)."""
    seen = {task_id}
    current = task_id
    while True:
        parents = sorted(p for p in model.parents.get(current, ()) if p in model.tasks)
        if not parents or parents[0] in seen:
            return current
        current = parents[0]
        seen.add(current)


def build_tree(tasks: Mapping[str, Task], root: str, *, limit: int = MAX_TREE_NODES) -> TreeNode:
    """The continuation tree under ``root``, depth first in continuation order."""
    top = TreeNode(root, missing=root not in tasks)
    expanded = {root}
    count = 1
    stack = [(top, iter(tasks[root].continuations if root in tasks else ()))]
    while stack:
        node, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            continue
        count += 1
        if count > limit:
            break
        if child in expanded:
            node.children.append(TreeNode(child, repeat=True))
            continue
        expanded.add(child)
        branch = TreeNode(child, missing=child not in tasks)
        node.children.append(branch)
        if child in tasks:
            stack.append((branch, iter(tasks[child].continuations)))
    return top


def descendants(tasks: Mapping[str, Task], root: str) -> list[str]:
    """Ids downstream of ``root`` (not itself), each once, nearest first."""
    seen: dict[str, None] = {}
    frontier = [root]
    while frontier:
        following = []
        for task_id in frontier:
            task = tasks.get(task_id)
            for child in task.continuations if task else ():
                if child not in seen and child != root:
                    seen[child] = None
                    following.append(child)
        frontier = following
    return list(seen)


def subtree_summary(tasks: Mapping[str, Task], root: str) -> str:
    """``"3/5 done, 1 failed"`` over ``root`` and everything after it."""
    ids = [root, *descendants(tasks, root)]
    statuses = [tasks[i].status if i in tasks else "?" for i in ids]
    parts = [f"{statuses.count('success')}/{len(ids)} done"]
    for label, count in (
        ("failed", statuses.count("failed")),
        ("cancelled", statuses.count("cancelled")),
        ("running", statuses.count("running") + statuses.count("cancelling")),
    ):
        if count:
            parts.append(f"{count} {label}")
    return ", ".join(parts)


def missing_in_tree(tasks: Mapping[str, Task], root: TreeNode) -> list[str]:
    found = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.missing:
            found.append(node.id)
        stack.extend(node.children)
    return found


# --- actions ------------------------------------------------------------------


def cancellable(tasks: Sequence[Task]) -> list[Task]:
    return [t for t in tasks if not t.final]


def retryable(tasks: Sequence[Task]) -> list[Task]:
    """A failed or cancelled task may run again; one that succeeded may not."""
    return [t for t in tasks if t.status in ("failed", "cancelled")]


# --- the link to the server ---------------------------------------------------

STALE_AFTER_S = 3.0  # "reconnecting…" this long, then "stale since hh:mm:ss"


class Link:
    """Whether what is on screen is live: ``connecting`` (nothing yet),
    ``loading`` (a snapshot on its way; events wait), ``live``, or
    ``reconnecting`` (the feed dropped: the data is as of ``lost_at``)."""

    def __init__(self) -> None:
        self.state = "connecting"
        self.lost_at: float | None = None
        self.error: str | None = None
        self.loaded = False

    @property
    def live(self) -> bool:
        return self.state == "live"

    def connected(self) -> None:
        self.error = None
        if self.state != "loading":
            self.state = "live" if self.loaded else "loading"
        if self.live:
            self.lost_at = None

    def loading(self) -> None:
        self.state = "loading"

    def snapshot_loaded(self, *, feed_up: bool) -> None:
        self.loaded = True
        self.state = "live" if feed_up else "reconnecting"
        if feed_up:
            self.lost_at = None

    def lost(self, now: float, error: str) -> None:
        self.error = error
        if self.lost_at is None:
            self.lost_at = now
        if self.state != "connecting":
            self.state = "reconnecting"

    def label(self, now: float, clock_text: Callable[[float], str]) -> tuple[str, str]:
        """(text, style) for the status bar."""
        if self.state == "live":
            return "● live", "green"
        if self.state == "loading":
            return ("◌ resyncing…" if self.loaded else "◌ loading…"), "yellow"
        if self.state == "connecting":
            return "◌ connecting…", "yellow"
        if not self.loaded or self.lost_at is None or now - self.lost_at < STALE_AFTER_S:
            return "◌ reconnecting…", "yellow"
        return f"✘ stale since {clock_text(self.lost_at)}", "bold red"


class RateMeter:
    """Events per second over the last few seconds."""

    def __init__(self, *, window_s: int = 5) -> None:
        self.window_s = window_s
        self._buckets: deque[tuple[int, int]] = deque()

    def add(self, count: int, now: float) -> None:
        second = int(now)
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1] = (second, self._buckets[-1][1] + count)
        else:
            self._buckets.append((second, count))
        while self._buckets and self._buckets[0][0] <= second - self.window_s:
            self._buckets.popleft()

    def rate(self, now: float) -> float:
        start = int(now) - self.window_s
        return sum(n for second, n in self._buckets if second > start) / self.window_s


def rate_text(per_s: float) -> str:
    if per_s >= 1000:
        return f"{per_s / 1000:.1f}k ev/s"
    return f"{per_s:.0f} ev/s" if per_s >= 10 or per_s == 0 else f"{per_s:.1f} ev/s"


# --- the ":" command line -----------------------------------------------------

VIEWS = ("queues", "workers", "tasks", "tree", "detail")
COMMANDS: dict[str, str] = {
    **{name: name for name in VIEWS},
    "queue": "queues",
    "qu": "queues",
    "worker": "workers",
    "wk": "workers",
    "w": "workers",
    "task": "tasks",
    "t": "tasks",
    "tr": "tree",
    "d": "detail",
    "filter": "filter",
    "f": "filter",
    "sort": "sort",
    "new": "submit",
    "submit": "submit",
    "help": "help",
    "quit": "quit",
    "q": "quit",
    "q!": "quit",
    "exit": "quit",
}


def parse_command(text: str) -> tuple[str, str]:
    """``":tasks"`` → ``("tasks", "")``; ``"sort -priority"`` → ``("sort", "-priority")``."""
    word, _, rest = text.strip().lstrip(":").strip().partition(" ")
    name = COMMANDS.get(word.lower())
    if name is None:
        known = ", ".join((*VIEWS, "filter", "sort", "new", "help", "quit"))
        raise FilterError(f"unknown command {word!r}; try {known}")
    return name, rest.strip()
