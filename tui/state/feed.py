"""The event reducer: what each event of the feed does to the ``Model`` (task
counts per queue, a task's state and attempt, progress, RSS samples, worker
liveness), one function per type, on the typed events of ``banyan.events``
(``reduce`` picks the function)."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from banyan.events import (
    EVENT_TYPES,
    Event,
    TaskCreated,
    TaskCreatedData,
    TaskProgress,
    TaskProgressData,
    TaskState,
    TaskStateData,
    TaskUsage,
    TaskUsageData,
    WorkerGoneData,
    WorkerHeartbeat,
    WorkerHeartbeatData,
    WorkerJoined,
    WorkerJoinedData,
    WorkerLeft,
    WorkerLost,
    decode,
)
from tui.state.model import (
    ACTIVE_STATES,
    FINAL_STATES,
    RATE_WINDOW_S,
    USAGE_POINTS,
    USAGE_TASKS,
    Changes,
    Model,
)
from tui.state.records import Task, Worker, created_from_id


def readable(frame: Mapping[str, Any]) -> Event | None:
    """A feed frame as its typed event (``banyan.events``); None for a control
    frame, a type this TUI does not know or a frame it cannot read (a newer
    server's?), which are skipped."""
    if frame.get("type") not in EVENT_TYPES:
        return None
    try:
        return decode(dict(frame))
    except ValidationError:
        return None


def count(model: Model, queue: str, state: str, delta: int) -> None:
    counts = model.queue_counts.setdefault(queue, {})
    counts[state] = max(0, counts.get(state, 0) + delta)


def _guess_created(task_id: str, ts: float) -> float:
    """A generated id starts with its creation second; a client-chosen one ("aa…") may
    say anything, and a creation after the event that names the task is impossible."""
    guess = created_from_id(task_id)
    return guess if 0 < guess <= ts or not ts else ts


def task_for(model: Model, data: TaskCreatedData | TaskStateData, ts: float) -> Task:
    task = model.tasks.get(data.id)
    if task is None:
        task = Task(
            id=data.id,
            name=data.name,
            queue=data.queue or "default",
            created=_guess_created(data.id, ts),
        )
        model.add_task(task)
    return task


def on_created(model: Model, data: TaskCreatedData, ts: float, changes: Changes) -> None:
    known = data.id in model.tasks
    task = task_for(model, data, ts)
    if known and ts < task.snapshot_updated:
        return
    task.name = data.name
    task.state = data.state
    task.queue = data.queue or task.queue
    task.priority = data.priority
    task.owner = data.owner
    task.group = data.group
    task.job = data.job if data.job is not None else task.job
    if not known and ts:
        task.created = ts  # this event is the creation: better than what the id says
    model.track(task)
    task.updated = max(task.updated, ts)
    if not known:
        count(model, task.queue, task.state, +1)
        if model.server_total is not None:
            model.server_total += 1
        changes.queues = True
    changes.tasks.add(task.id)


def on_state(model: Model, data: TaskStateData, ts: float, changes: Changes) -> None:
    task = task_for(model, data, ts)
    previous = data.previous or task.state
    state = data.state
    count(model, data.queue or task.queue, previous, -1)
    count(model, data.queue or task.queue, state, +1)
    changes.queues = True
    if ts < task.snapshot_updated:
        return  # the snapshot already shows something newer
    task.state = state
    task.updated = max(task.updated, ts)
    model.track(task)
    if state == "running":
        task.worker = data.worker if data.worker is not None else task.worker
        task.attempt = data.attempt or task.attempt + 1
        task.exit_status = task.exit_code = task.ended = None
        task.percent = None
        task.message = None
        task.started = ts
        changes.workers_stale = True
    if data.exit_status is not None:
        task.exit_status = data.exit_status
        task.ended = ts
        changes.workers_stale = True
    if state == "available" and data.retry:
        task.retry_count += 1
    if state in FINAL_STATES:
        model.usage.pop(task.id, None)
        if previous in ACTIVE_STATES:
            changes.workers_stale = True
    if state == "terminated":
        buckets = model.done.setdefault(task.queue, deque(maxlen=RATE_WINDOW_S + 1))
        second = int(ts)
        if buckets and buckets[-1][0] == second:
            buckets[-1] = (second, buckets[-1][1] + 1)
        else:
            buckets.append((second, 1))
    changes.tasks.add(task.id)


def on_progress(model: Model, data: TaskProgressData, ts: float, changes: Changes) -> None:
    task = model.tasks.get(data.id)
    if task is None:
        return
    if data.percent is not None:
        task.percent = data.percent
    if data.message is not None:
        task.message = data.message
    changes.tasks.add(task.id)


def on_usage(model: Model, data: TaskUsageData, ts: float, changes: Changes) -> None:
    task_id = data.id
    when = data.time or ts
    points = model.usage.pop(task_id, None) or deque(maxlen=USAGE_POINTS)
    points.append((when, data.resident_memory_bytes))
    model.usage[task_id] = points  # re-inserted: most recently sampled last
    cpu = data.cpu_percent  # sent by the worker; a server may not pass it on
    if cpu is not None:
        model.cpu[task_id] = (when, cpu)
    if len(model.usage) > USAGE_TASKS:
        oldest = next(iter(model.usage))
        del model.usage[oldest]
        model.cpu.pop(oldest, None)
    changes.usage.add(task_id)


def on_worker(
    model: Model,
    data: WorkerHeartbeatData | WorkerJoinedData,
    ts: float,
    changes: Changes,
) -> None:
    name = data.name
    worker = model.workers.get(name)
    if worker is None:
        worker = model.workers[name] = Worker(name=name)
    worker.last_heartbeat = max(worker.last_heartbeat or 0.0, ts)
    if worker.state in ("lost", "left", "disconnected"):
        worker.state = "idle"
    changes.workers.add(name)


def on_joined(model: Model, data: WorkerJoinedData, ts: float, changes: Changes) -> None:
    on_worker(model, data, ts, changes)
    worker = model.workers[data.name]
    worker.host = data.host
    worker.capacity = dict(data.capacity or worker.capacity)
    worker.queues = tuple(data.queues or worker.queues)
    worker.state = "busy" if worker.running else "idle"
    changes.workers_stale = True


def gone(model: Model, data: WorkerGoneData, state: str, changes: Changes) -> None:
    """``worker.lost`` (``state`` "lost") and ``worker.left`` ("left")."""
    worker = model.workers.setdefault(data.name, Worker(name=data.name))
    worker.state = state
    worker.running = []
    changes.workers.add(data.name)
    changes.workers_stale = True


def reduce(model: Model, event: Event, changes: Changes) -> None:
    """Apply one event to ``model``, noting what it touched in ``changes``."""
    ts = event.timestamp or 0.0
    match event:
        case TaskCreated():
            on_created(model, event.data, ts, changes)
        case TaskState():
            on_state(model, event.data, ts, changes)
        case TaskProgress():
            on_progress(model, event.data, ts, changes)
        case TaskUsage():
            on_usage(model, event.data, ts, changes)
        case WorkerJoined():
            on_joined(model, event.data, ts, changes)
        case WorkerHeartbeat():
            on_worker(model, event.data, ts, changes)
        case WorkerLost():
            gone(model, event.data, "lost", changes)
        case WorkerLeft():
            gone(model, event.data, "left", changes)
