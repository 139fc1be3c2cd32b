"""One builder per event type: every event the server stores is made here,
from ``banyan.events``' models (serialised once, when stored)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from banyan import events as ev


def task_created(
    task_id: str,
    *,
    name: str | None,
    state: str,
    queue: str,
    priority: int,
    owner: str,
    group: bool,
    job: str | None = None,
) -> ev.TaskCreated:
    data = ev.TaskCreatedData(
        id=task_id,
        name=name,
        state=state,
        queue=queue,
        priority=priority,
        owner=owner,
        group=group,
        job=job,
    )
    return ev.TaskCreated(data=data)


def task_state(
    task_id: str,
    state: str,
    previous: str,
    *,
    name: str | None,
    queue: str,
    worker: str | None = None,
    exit_status: str | None = None,
    attempt: int | None = None,
    retry: bool | None = None,
    cause: str | None = None,
) -> ev.TaskState:
    """A task changed state (``cause``: the task whose cancellation cascaded here)."""
    data = ev.TaskStateData(
        id=task_id,
        state=str(state),
        previous=str(previous),
        name=name,
        queue=queue,
        worker=worker,
        exit_status=exit_status,
        attempt=attempt,
        retry=retry or None,
        cause=cause,
    )
    return ev.TaskState(data=data)


def task_progress(
    task_id: str, *, name: str | None, queue: str, attempt: int, progress: dict[str, Any]
) -> ev.TaskProgress:
    data = ev.TaskProgressData(id=task_id, name=name, queue=queue, attempt=attempt, **progress)
    return ev.TaskProgress(data=data)


def task_usage(
    task_id: str, *, attempt: int, time: float, rss: int, cpu_percent: float | None = None
) -> ev.TaskUsage:
    data = ev.TaskUsageData(
        id=task_id, attempt=attempt, time=time, resident_memory_bytes=rss, cpu_percent=cpu_percent
    )
    return ev.TaskUsage(data=data)


def worker_joined(
    name: str,
    *,
    host: str,
    capacity: dict[str, Any],
    queues: list[str],
    rejoined: bool,
    resumed: list[str],
) -> ev.WorkerJoined:
    data = ev.WorkerJoinedData(
        name=name, host=host, capacity=capacity, queues=queues, rejoined=rejoined, resumed=resumed
    )
    return ev.WorkerJoined(data=data)


def worker_heartbeat(name: str) -> ev.WorkerHeartbeat:
    data = ev.WorkerHeartbeatData(name=name, worker=name)
    return ev.WorkerHeartbeat(data=data)


def worker_gone(
    name: str, *, lost: bool, abandoned: Sequence[str]
) -> ev.WorkerLost | ev.WorkerLeft:
    data = ev.WorkerGoneData(name=name, abandoned=list(abandoned))
    if lost:
        return ev.WorkerLost(data=data)
    return ev.WorkerLeft(data=data)


def task_id_of(event: ev.Event) -> str | None:
    """The task an event is about (the events table indexes it), if any."""
    data = event.data
    return getattr(data, "id", None) if event.type.startswith("task.") else None
