"""The TUI's model: what it knows about tasks, workers and queues, loaded from
a snapshot and kept live by the event feed (``Model.apply``, with the reducer
in ``tui.state.feed``), with the figures derived from it."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from banyan.documents import TaskDoc, WorkerDoc
from banyan.events import Event
from tui.state.records import (
    ACTIVE_STATES,
    FINAL_STATES,
    Task,
    Worker,
    parse_time,
    task_from_doc,
    worker_from_doc,
)

__all__ = ["ACTIVE_STATES", "FINAL_STATES"]

USAGE_POINTS = 120  # RSS samples kept per task for the sparkline
USAGE_TASKS = 2_000  # tasks whose samples are kept (the most recently sampled)
# Tasks that ended, counted per queue from the feed: the Queues view's DONE/1m column and
# its "finished 1m · 5m · 15m" header are both ``Model.finished``.
FINISHED_WINDOWS_S = {"1m": 60, "5m": 300, "15m": 900}
RATE_WINDOW_S = max(FINISHED_WINDOWS_S.values())  # per-second buckets kept


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


@dataclass(frozen=True)
class WorkerUse:
    """A worker's measured use: resident bytes and CPU (100 = one core busy)."""

    rss_bytes: int | None
    cpu_percent: float | None


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
    # The latest CPU sample per task, (time, percent of one core), when the feed has one.
    cpu: dict[str, tuple[float, float]] = field(default_factory=dict)
    done: dict[str, deque[tuple[int, int]]] = field(default_factory=dict)
    active: set[str] = field(default_factory=set)  # running or being cancelled
    seq: int = 0
    job_names: dict[str, str] = field(default_factory=dict)  # by job id, when known
    watching_since: float | None = None  # the snapshot's time: the feed counts from here

    @classmethod
    def from_snapshot(
        cls,
        tasks: Iterable[TaskDoc],
        workers: Iterable[WorkerDoc],
        stats: Mapping[str, Any] | None,
        *,
        now: float,
        server_total: int | None = None,
    ) -> Model:
        model = cls(server_total=server_total, watching_since=now)
        for doc in tasks:
            model.add_task(task_from_doc(doc))
        for worker_doc in workers:
            worker = worker_from_doc(worker_doc, now=now)
            model.workers[worker.name] = worker
        model.set_stats(stats)
        return model

    def add_task(self, task: Task) -> None:
        self.tasks[task.id] = task
        self.track(task)
        for child in task.continuations:
            self.parents.setdefault(child, set()).add(task.id)

    def track(self, task: Task) -> None:
        if task.state in ACTIVE_STATES:
            self.active.add(task.id)
        else:
            self.active.discard(task.id)

    def merge_docs(self, docs: Iterable[TaskDoc]) -> set[str]:
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

    def waiting_ids(self, limit: int) -> list[str]:
        """The newest ``limit`` loaded tasks that wait to run (inactive or available)."""
        waiting = (t.id for t in self.tasks.values() if t.state in ("inactive", "available"))
        return heapq.nlargest(limit, waiting)

    def set_reasons(self, asked: Iterable[str], reasons: Mapping[str, str]) -> set[str]:
        """Record why the ``asked`` tasks wait; returns the ids whose reason changed."""
        changed: set[str] = set()
        for task_id in asked:
            task = self.tasks.get(task_id)
            if task is not None and task.reason != reasons.get(task_id):
                task.reason = reasons.get(task_id)
                changed.add(task_id)
        return changed

    def set_workers(self, docs: Iterable[WorkerDoc], *, now: float) -> None:
        fresh = {}
        for doc in docs:
            worker = worker_from_doc(doc, now=now)
            known = self.workers.get(worker.name)
            # A heartbeat event newer than the listing wins.
            if known and known.last_heartbeat and worker.last_heartbeat:
                worker.last_heartbeat = max(known.last_heartbeat, worker.last_heartbeat)
            fresh[worker.name] = worker
        self.workers = fresh

    def apply(self, events: Iterable[Event]) -> Changes:
        """Apply events of the feed (``tui.state.feed`` says what each type does)."""
        # Imported here: the reducer's functions take a Model, so feed imports this module.
        from tui.state.feed import reduce

        changes = Changes()
        for event in events:
            if event.seq is not None:
                self.seq = max(self.seq, event.seq)
            reduce(self, event, changes)
            changes.applied += 1
        return changes

    # --- derived ----------------------------------------------------------------

    def finished(self, now: float, window_s: int, queue: str | None = None) -> int:
        """Tasks of ``queue`` (of every queue: None) that ended in the last ``window_s``
        seconds, as the feed told us; a lower bound while ``watched_for(window_s)`` is false."""
        start = int(now) - window_s
        lists = self.done.values() if queue is None else [self.done.get(queue) or ()]
        return sum(n for buckets in lists for second, n in buckets if second > start)

    def watched_for(self, window_s: int, now: float) -> bool:
        """Whether the feed has been followed for all of the last ``window_s`` seconds."""
        return self.watching_since is not None and now - self.watching_since >= window_s

    def done_last_minute(self, queue: str, now: float) -> int:
        return self.finished(now, FINISHED_WINDOWS_S["1m"], queue)

    def worker_use(self) -> dict[str, WorkerUse]:
        """What each worker's running tasks use, measured (not reserved): the sum of their
        latest ``task.usage`` samples, resident memory and CPU. A worker none of whose
        running tasks has a sample yet is left out; CPU is None when no sample has it."""
        rss: dict[str, int] = {}
        cpu: dict[str, float] = {}
        for task_id in self.active:
            worker = self.tasks[task_id].worker
            if worker is None:
                continue
            points = self.usage.get(task_id)
            if points:
                rss[worker] = rss.get(worker, 0) + points[-1][1]
            sample = self.cpu.get(task_id)
            if sample is not None:
                cpu[worker] = cpu.get(worker, 0.0) + sample[1]
        return {w: WorkerUse(rss.get(w), cpu.get(w)) for w in rss.keys() | cpu.keys()}

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


def counts_from_tasks(tasks: Iterable[Task]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for task in tasks:
        by_state = counts.setdefault(task.queue, {})
        by_state[task.state] = by_state.get(task.state, 0) + 1
    return counts
