"""``/stats`` (queues, throughput, wait and run times, worker load),
``/tasks/{id}/stats`` (counts over a continuation tree) and
``/tasks/{id}/pending_reason`` (why a task is not running yet).

The store answers for the tasks; which workers are live the gateway knows
(and, when several servers share the store, the store for the other servers'
workers), so the worker figures and the pending reasons are put together
here from ``read_workers`` and ``worker_state`` (the same state ``/workers``
shows).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from banyan.dates import format_date
from banyan.resources import Amounts, Resources, free_share
from banyan.states import ACTIVE_STATES, State
from server.auth import ANY_ROLE, require
from server.domain import claims
from server.domain import pending as domain_pending
from server.domain.pending import SERVING_STATES, PendingTask, WorkerSeen
from server.keys import GATEWAY, STORE
from server.stores.base import Store
from server.views.common import json_response, settings, task_id
from server.views.workers import read_workers, remaining, responsive, worker_state

routes = web.RouteTableDef()

LIVE_STATES = ("idle", "busy", "draining")
WORKER_STATES = (*LIVE_STATES, "disconnected", "lost", "left")


@routes.get("/stats")
async def stats(request: web.Request) -> web.Response:
    await require(request, ANY_ROLE)
    store = request.app[STORE]
    figures = await store.statistics()
    found = await read_workers(request)
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
    seen = await workers_seen(request) if doc["state"] == State.AVAILABLE else []
    code, reason = explain_seen(doc, await with_ahead(store, doc, seen))
    worker = (doc.get("execution") or {}).get("worker")
    if doc["state"] in ACTIVE_STATES and worker is not None:
        reason += await _quiet_note(request, worker)
    return json_response({"_id": doc["_id"], "state": doc["state"], "code": code, "reason": reason})


QUIET_NOTE = " (unresponsive: not heard from for two heartbeats; not lost yet)"


async def _quiet_note(request: web.Request, name: str) -> str:
    """``QUIET_NOTE`` for a task whose worker has gone quiet, else nothing."""
    found = await read_workers(request, name)
    return QUIET_NOTE if quiet_names(request, found) else ""


def quiet_names(request: web.Request, found: Sequence[dict[str, Any]]) -> set[str]:
    """The workers of ``found`` not heard from for two heartbeats (not lost yet)."""
    interval = settings(request).heartbeat_interval_s
    gateway = request.app[GATEWAY]
    return {w["name"] for w in found if not responsive(gateway, w, interval)}


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


async def workers_seen(request: web.Request) -> list[WorkerSeen]:
    """Every stored worker with its current state, as the pending rules see it."""
    return seen_workers(with_states(request, await read_workers(request)))


def with_states(
    request: web.Request, found: Sequence[dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """Each worker with its live state and its remaining lifetime (``remaining_s``)."""
    gateway = request.app[GATEWAY]
    return [(worker_state(gateway, w), {**w, "remaining_s": remaining(gateway, w)}) for w in found]


def seen_workers(workers: Sequence[tuple[str, dict[str, Any]]]) -> list[WorkerSeen]:
    return [
        WorkerSeen(
            name=w["name"],
            state=state,
            queues=w["queues"],
            capacity=Resources.model_validate(w["capacity"]),
            running=[Resources.model_validate(a["requested_resources"]) for a in w["running"]],
            remaining_s=w.get("remaining_s"),
        )
        for state, w in workers
    ]


async def with_ahead(
    store: Store, task: dict[str, Any], seen: Sequence[WorkerSeen]
) -> list[WorkerSeen]:
    """``seen``, each worker serving the task's queue given the available tasks
    ahead of it in that worker's claim order (``Store.tasks_ahead``, one read
    per set of queues). Read only for an available task that some such worker
    has room for now: otherwise what is ahead cannot change its reason, and a
    page of waiting tasks in a full cluster costs no reads."""
    if task["state"] != State.AVAILABLE:
        return list(seen)
    request = Amounts.of(Resources.model_validate(task["requested_resources"]))
    serving = [w for w in seen if task["queue"] in w.queues and w.state in SERVING_STATES]
    if not any(claims.would_claim(request, free_share(w.capacity, w.running)) for w in serving):
        return list(seen)
    ahead: dict[tuple[str, ...], list[Amounts]] = {}
    out: list[WorkerSeen] = []
    for worker in seen:
        if any(worker is w for w in serving):
            queues = tuple(worker.queues)
            if queues not in ahead:
                ahead[queues] = await store.tasks_ahead(
                    task["_id"], task["priority"], queues, claims.AHEAD_LIMIT
                )
            found = ahead[queues]
            worker = replace(worker, ahead=found, ahead_complete=len(found) < claims.AHEAD_LIMIT)
        out.append(worker)
    return out


def explain(task: dict[str, Any], workers: Sequence[tuple[str, dict[str, Any]]]) -> tuple[str, str]:
    """``(code, reason)`` for a task document, given every worker with its
    current state (as ``worker_state`` gives it) and no tasks ahead of it:
    ``server.domain.pending``. The views use ``with_ahead`` then ``explain_seen``."""
    return explain_seen(task, seen_workers(workers))


def explain_seen(task: dict[str, Any], seen: Sequence[WorkerSeen]) -> tuple[str, str]:
    """``explain`` with the workers already turned into ``WorkerSeen`` (with
    the tasks ahead, ``with_ahead``)."""
    execution = task.get("execution") or {}
    pending = PendingTask(
        state=State(task["state"]),
        queue=task["queue"],
        request=Resources.model_validate(task["requested_resources"]),
        pending_dependency_count=task.get("pending_dependency_count", 0),
        worker=execution.get("worker"),
        exit_status=execution.get("exit_status"),
        time_limit=task.get("time_limit"),
        not_before=task.get("not_before"),
        now=time.time(),
    )
    return domain_pending.pending_reason(pending, seen)
