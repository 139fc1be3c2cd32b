"""``/stats`` (queues, throughput, wait and run times, worker load),
``/tasks/{id}/stats`` (counts over a continuation tree) and
``/tasks/{id}/pending_reason`` (why a task is not running yet).

The store answers for the tasks; which workers are live only the gateway
knows, so the worker figures and the pending reasons are put together here
from ``list_workers`` and ``worker_state`` (the same state ``/workers`` shows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from banyan.dates import format_date
from banyan.resources import Resources, fits
from banyan.states import State
from banyan.units import format_memory
from server.auth import ANY_ROLE, require
from server.keys import GATEWAY, STORE
from server.views.common import json_response, settings, task_id
from server.views.workers import worker_state

routes = web.RouteTableDef()

LIVE_STATES = ("idle", "busy", "draining")
WORKER_STATES = (*LIVE_STATES, "disconnected", "lost", "left")
NOT_PENDING = "not_pending"
HELD = "held"
WAITING_ON_PARENTS = "waiting_on_parents"
NO_WORKER_FOR_QUEUE = "no_worker_for_queue"
INSUFFICIENT_RESOURCES = "insufficient_resources"
BUSY = "busy"
QUEUED = "queued"


@routes.get("/stats")
async def stats(request: web.Request) -> web.Response:
    await require(request, ANY_ROLE)
    store = request.app[STORE]
    figures = await store.statistics()
    found = await store.list_workers()
    gateway = request.app[GATEWAY]
    date_format = settings(request).date_format
    tasks = figures["tasks"]
    oldest = {q: format_date(t, date_format) for q, t in tasks["oldest_available"].items()}
    return json_response(
        {
            "tasks": {**tasks, "oldest_available": oldest},
            "workers": workers_summary([(worker_state(gateway, w), w) for w in found]),
            "throughput": figures["throughput"],
            "wait_time_s": figures["wait_time_s"],
            "run_time_s": figures["run_time_s"],
        }
    )


@routes.get("/tasks/{task_id}/stats")
async def tree_stats(request: web.Request) -> web.Response:
    await require(request, ANY_ROLE)
    return json_response(await request.app[STORE].tree_statistics(task_id(request)))


@routes.get("/tasks/{task_id}/pending_reason")
async def pending_reason(request: web.Request) -> web.Response:
    await require(request, ANY_ROLE)
    store = request.app[STORE]
    doc = await store.get_task(task_id(request))
    gateway = request.app[GATEWAY]
    found = await store.list_workers() if doc["state"] == State.AVAILABLE else []
    code, reason = explain(doc, [(worker_state(gateway, w), w) for w in found])
    return json_response({"_id": doc["_id"], "state": doc["state"], "code": code, "reason": reason})


# --- workers -----------------------------------------------------------------


@dataclass
class _Load:
    """Resources added up (``/stats`` shows cores, memory and GPUs)."""

    cores: float = 0.0
    memory: int = 0
    gpus: int = 0
    custom: dict[str, float] = field(default_factory=dict)

    def add(self, resources: Resources) -> None:
        self.cores += resources.cores
        self.memory += resources.memory
        self.gpus += resources.gpu_count
        for name, amount in resources.custom.items():
            self.custom[name] = self.custom.get(name, 0.0) + amount

    def shown(self) -> dict[str, Any]:
        cores = round(self.cores, 6)
        return {
            "cores": int(cores) if cores.is_integer() else cores,
            "memory": self.memory,
            "gpus": self.gpus,
        }


def _in_use(worker: dict[str, Any]) -> _Load:
    load = _Load()
    for attempt in worker["running"]:
        load.add(Resources.model_validate(attempt["requested_resources"]))
    return load


def workers_summary(workers: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Counts by state; ``total``, ``capacity`` and ``in_use`` over the live
    workers (idle, busy, draining): what could run work right now."""
    counts = dict.fromkeys(WORKER_STATES, 0)
    capacity, in_use = _Load(), _Load()
    for state, worker in workers:
        counts[state] = counts.get(state, 0) + 1
        if state in LIVE_STATES:
            capacity.add(Resources.model_validate(worker["capacity"]))
            for attempt in worker["running"]:
                in_use.add(Resources.model_validate(attempt["requested_resources"]))
    return {
        "total": sum(counts[s] for s in LIVE_STATES),
        **counts,
        "capacity": capacity.shown(),
        "in_use": in_use.shown(),
    }


# --- pending reasons ---------------------------------------------------------


def explain(task: dict[str, Any], workers: Sequence[tuple[str, dict[str, Any]]]) -> tuple[str, str]:
    """``(code, reason)``: why ``task`` is not running, given every worker
    with its current state (as ``worker_state`` gives it)."""
    state = task["state"]
    execution = task.get("execution") or {}
    if state == State.INACTIVE:
        waiting = task["pending_dependency_count"]
        if waiting:
            return WAITING_ON_PARENTS, f"waiting on {waiting} parent task(s)"
        return HELD, "held: make it available to run"
    if state == State.RUNNING:
        return NOT_PENDING, f"running on worker {execution.get('worker')!r}"
    if state == State.PENDING_CANCELLATION:
        return NOT_PENDING, f"being cancelled on worker {execution.get('worker')!r}"
    if state == State.TERMINATED:
        return NOT_PENDING, f"terminated: {execution.get('exit_status')}"
    if state == State.CANCELLED:
        return NOT_PENDING, "cancelled"
    return _available(task, workers)


def _available(
    task: dict[str, Any], workers: Sequence[tuple[str, dict[str, Any]]]
) -> tuple[str, str]:
    queue = task["queue"]
    serving = [w for s, w in workers if queue in w["queues"] and s in ("idle", "busy")]
    if not serving:
        draining = sum(1 for s, w in workers if queue in w["queues"] and s == "draining")
        note = f" ({draining} draining worker(s) do)" if draining else ""
        return NO_WORKER_FOR_QUEUE, f"no connected worker serves queue {queue!r}{note}"
    request = Resources.model_validate(task["requested_resources"])
    capacities = [Resources.model_validate(w["capacity"]) for w in serving]
    able = [(w, c) for w, c in zip(serving, capacities, strict=True) if fits(request, c)]
    if not able:
        return INSUFFICIENT_RESOURCES, _shortfall(request, capacities, queue)
    for worker, capacity in able:
        if fits(request, _free(capacity, _in_use(worker))):
            return QUEUED, (
                f"worker {worker['name']!r} has room for it: it should start momentarily"
            )
    return BUSY, (
        f"{len(able)} worker(s) serving {queue!r} could run it, but none has enough free right now"
    )


def _free(capacity: Resources, used: _Load) -> Resources:
    data: dict[str, Any] = {
        "cores": max(0.0, capacity.cores - used.cores),
        "memory": max(0, capacity.memory - used.memory),
        "gpus": max(0, capacity.gpu_count - used.gpus),
    }
    for name, amount in capacity.custom.items():
        data[name] = max(0.0, amount - used.custom.get(name, 0.0))
    return Resources.model_validate(data)


def _number(value: float) -> str:
    return f"{value:g}"


def _shortfall(request: Resources, capacities: Sequence[Resources], queue: str) -> str:
    """Which resource no worker serving ``queue`` has enough of, and the most one has."""
    wants: list[tuple[str, float, float]] = [
        ("cores", request.cores, max(c.cores for c in capacities)),
        ("memory", request.memory, max(c.memory for c in capacities)),
        ("GPUs", request.gpu_count, max(c.gpu_count for c in capacities)),
    ]
    for name, amount in request.custom.items():
        wants.append((name, amount, max(c.custom.get(name, 0.0) for c in capacities)))
    short = []
    for label, wanted, most in wants:
        if wanted > most:
            if label == "memory":
                short.append(
                    f"needs {format_memory(int(wanted))} of memory; the largest worker serving "
                    f"{queue!r} has {format_memory(int(most))}"
                )
            else:
                short.append(
                    f"needs {_number(wanted)} {label}; the largest worker serving {queue!r} "
                    f"has {_number(most)}"
                )
    if short:
        return "; ".join(short)
    return (
        f"no single worker serving {queue!r} has all it needs at once "
        f"({_number(request.cores)} cores, {format_memory(request.memory)} of memory, "
        f"{request.gpu_count} GPUs)"
    )
