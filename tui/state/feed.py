"""The event reducer: what each event feed frame type does to the ``Model``
(task counts per queue, a task's state and attempt, progress, RSS samples,
worker liveness), as one function per type in ``HANDLERS``."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from tui.state.model import (
    ACTIVE_STATES,
    FINAL_STATES,
    RATE_WINDOW_S,
    USAGE_POINTS,
    USAGE_TASKS,
    Changes,
    Model,
)
from tui.state.records import Task, Worker, created_from_id, parse_time


def count(model: Model, queue: str, state: str, delta: int) -> None:
    counts = model.queue_counts.setdefault(queue, {})
    counts[state] = max(0, counts.get(state, 0) + delta)


def _guess_created(task_id: str, ts: float) -> float:
    """A generated id starts with its creation second; a client-chosen one ("aa…") may
    say anything, and a creation after the event that names the task is impossible."""
    guess = created_from_id(task_id)
    return guess if 0 < guess <= ts or not ts else ts


def task_for(model: Model, data: Mapping[str, Any], ts: float) -> Task:
    task_id = str(data["_id"])
    task = model.tasks.get(task_id)
    if task is None:
        task = Task(
            id=task_id,
            name=data.get("name"),
            queue=str(data.get("queue") or "default"),
            created=_guess_created(task_id, ts),
        )
        model.add_task(task)
    return task


def on_created(model: Model, data: Mapping[str, Any], ts: float, changes: Changes) -> None:
    known = str(data.get("_id")) in model.tasks
    task = task_for(model, data, ts)
    if known and ts < task.snapshot_updated:
        return
    task.name = data.get("name", task.name)
    task.state = str(data.get("state", task.state))
    task.queue = str(data.get("queue") or task.queue)
    task.priority = int(data.get("priority") or 0)
    task.owner = data.get("owner", task.owner)
    task.group = bool(data.get("group", False))
    task.job = data.get("job", task.job)
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


def on_state(model: Model, data: Mapping[str, Any], ts: float, changes: Changes) -> None:
    task = task_for(model, data, ts)
    previous = str(data.get("previous") or task.state)
    state = str(data.get("state"))
    count(model, str(data.get("queue") or task.queue), previous, -1)
    count(model, str(data.get("queue") or task.queue), state, +1)
    changes.queues = True
    if ts < task.snapshot_updated:
        return  # the snapshot already shows something newer
    task.state = state
    task.updated = max(task.updated, ts)
    model.track(task)
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


def on_progress(model: Model, data: Mapping[str, Any], ts: float, changes: Changes) -> None:
    task = model.tasks.get(str(data.get("_id")))
    if task is None:
        return
    percent = data.get("percent")
    if isinstance(percent, int | float):
        task.percent = float(percent)
    if "message" in data:
        task.message = data["message"]
    changes.tasks.add(task.id)


def on_usage(model: Model, data: Mapping[str, Any], ts: float, changes: Changes) -> None:
    task_id = str(data.get("_id"))
    rss = data.get("resident_memory_bytes")
    if not isinstance(rss, int):
        return
    when = parse_time(data.get("time")) or ts
    points = model.usage.pop(task_id, None) or deque(maxlen=USAGE_POINTS)
    points.append((when, rss))
    model.usage[task_id] = points  # re-inserted: most recently sampled last
    cpu = data.get("cpu_percent")  # sent by the worker; a server may not pass it on
    if isinstance(cpu, int | float) and not isinstance(cpu, bool):
        model.cpu[task_id] = (when, float(cpu))
    if len(model.usage) > USAGE_TASKS:
        oldest = next(iter(model.usage))
        del model.usage[oldest]
        model.cpu.pop(oldest, None)
    changes.usage.add(task_id)


def on_worker(model: Model, data: Mapping[str, Any], ts: float, changes: Changes) -> None:
    name = str(data.get("name"))
    worker = model.workers.get(name)
    if worker is None:
        worker = model.workers[name] = Worker(name=name)
    worker.last_heartbeat = max(worker.last_heartbeat or 0.0, ts)
    if worker.state in ("lost", "left", "disconnected"):
        worker.state = "idle"
    changes.workers.add(name)


def on_joined(model: Model, data: Mapping[str, Any], ts: float, changes: Changes) -> None:
    on_worker(model, data, ts, changes)
    worker = model.workers[str(data.get("name"))]
    worker.host = data.get("host", worker.host)
    worker.capacity = dict(data.get("capacity") or worker.capacity)
    worker.queues = tuple(data.get("queues") or worker.queues)
    worker.state = "busy" if worker.running else "idle"
    changes.workers_stale = True


def on_lost(model: Model, data: Mapping[str, Any], ts: float, changes: Changes) -> None:
    gone(model, data, "lost", changes)


def on_left(model: Model, data: Mapping[str, Any], ts: float, changes: Changes) -> None:
    gone(model, data, "left", changes)


def gone(model: Model, data: Mapping[str, Any], state: str, changes: Changes) -> None:
    name = str(data.get("name"))
    worker = model.workers.setdefault(name, Worker(name=name))
    worker.state = state
    worker.running = []
    changes.workers.add(name)
    changes.workers_stale = True


HANDLERS: dict[str, Callable[[Model, Mapping[str, Any], float, Changes], None]] = {
    "task.created": on_created,
    "task.state": on_state,
    "task.progress": on_progress,
    "task.usage": on_usage,
    "worker.joined": on_joined,
    "worker.heartbeat": on_worker,
    "worker.lost": on_lost,
    "worker.left": on_left,
}
