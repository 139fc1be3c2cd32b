"""``/workers``: register a worker (its token), list workers with their load,
the gateway websocket, and the captured output of a task's attempts."""

from __future__ import annotations

import time
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from banyan.dates import format_date
from banyan.errors import BadRequest, InvalidInput, NotFound
from banyan.models import ExecutionUpdate
from banyan.resources import Resources
from banyan.tokens import Role
from server import render
from server.auth import ANY_ROLE, PROVIDERS, WORKERS, require
from server.gateway import Gateway
from server.keys import GATEWAY, STORE
from server.stores.cluster import RemoteWorker, SharedStore
from server.views.common import (
    body,
    expect_kind,
    json_response,
    settings,
    single_arg,
    task_id,
    validate,
)

_NAME_MAX = 128  # a token name's limit
# Heartbeat intervals of silence after which a connected worker shows as unresponsive.
UNRESPONSIVE_HEARTBEATS = 2
# The key ``read_workers`` adds to a worker held by another server (never rendered).
ELSEWHERE = "_elsewhere"


class WorkerRegistration(BaseModel):
    """``POST /workers``: a name for the worker; the answer carries its token."""

    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=_NAME_MAX, pattern=r"^[^\x00-\x1f]+$")]


_REGISTRATION = TypeAdapter(WorkerRegistration)
_EXECUTION = TypeAdapter(ExecutionUpdate)
routes = web.RouteTableDef()


@routes.post("/workers")
async def register(request: web.Request) -> web.Response:
    """A new worker token. An admin names it as it likes (409 for a name in use
    or revoked: admins can list tokens anyway). A provider's worker tokens are
    named ``<provider>:<name>``, so a provider can only ever collide with the
    names it registered itself: its answer never tells whether another
    provider's or an admin's token of some name exists."""
    caller = await require(request, PROVIDERS)
    data = await body(request)
    expect_kind(data, "object")
    registration = validate(_REGISTRATION, data, what="worker")
    name = registration.name
    if not caller.is_admin:
        if ":" in name:
            raise InvalidInput(
                "invalid worker: name: may not contain ':' (the server names a provider's "
                f"workers '{caller.name}:<name>')",
                issues={"name": "may not contain ':'"},
            )
        name = f"{caller.name}:{name}"
        if len(name) > _NAME_MAX:
            raise InvalidInput(
                f"invalid worker: name: '{caller.name}:' and the name are over {_NAME_MAX} "
                "characters",
                issues={"name": f"at most {_NAME_MAX - len(caller.name) - 1} characters"},
            )
    token = await request.app[STORE].create_token(name, Role.WORKER)
    return json_response(
        {"_status": "OK", "name": name, "token": token, "role": "worker"}, status=201
    )


def _free(capacity: dict[str, Any], running: list[dict[str, Any]]) -> dict[str, Any]:
    total = Resources.model_validate(capacity)
    free: dict[str, Any] = {
        "cores": total.cores,
        "memory": total.memory,
        "gpus": total.gpu_count,
        **total.custom,
    }
    for attempt in running:
        used = Resources.model_validate(attempt["requested_resources"])
        free["cores"] -= used.cores
        free["memory"] -= used.memory
        free["gpus"] -= used.gpu_count
        for key, amount in used.custom.items():
            free[key] = free.get(key, 0) - amount
    return {k: int(v) if float(v).is_integer() else round(v, 6) for k, v in free.items()}


async def read_workers(request: web.Request, name: str | None = None) -> list[dict[str, Any]]:
    """``Store.list_workers``, and when several servers share the store, each
    worker connected to another live server carries that server's view of
    it under ``ELSEWHERE`` (``server.stores.cluster``): ``/stats``, ``/workers``
    and the pending reasons then cover the whole cluster, not this server's
    sessions only."""
    store = request.app[STORE]
    found = await store.list_workers(name)
    if isinstance(store, SharedStore) and found:
        remote = await store.connected_elsewhere(alive_s=settings(request).worker_timeout_s)
        for worker in found:
            if worker["name"] in remote and worker["state"] == "connected":
                worker[ELSEWHERE] = remote[worker["name"]]
    return found


def _elsewhere(gateway: Gateway, worker: dict[str, Any]) -> RemoteWorker | None:
    """Another server's view of the worker, unless this server holds its session."""
    if worker["name"] in gateway.sessions:
        return None
    remote: RemoteWorker | None = worker.get(ELSEWHERE)
    return remote


def worker_state(gateway: Gateway, worker: dict[str, Any]) -> str:
    """What a worker is doing now: ``idle``, ``busy`` or ``draining`` while its
    session is live (here or, ``read_workers``, on another live server);
    ``disconnected`` when stored as connected but without a session (it may
    still come back in time); else the stored ``lost``/``left``."""
    state = str(worker["state"])
    if state != "connected":
        return state
    session = gateway.sessions.get(worker["name"])
    remote = _elsewhere(gateway, worker)
    if session is None and remote is None:
        return "disconnected"
    draining = session.draining if session is not None else bool(remote and remote.draining)
    if draining:
        return "draining"
    return "busy" if worker["running"] else "idle"


def remaining(gateway: Gateway, worker: dict[str, Any]) -> float | None:
    """The worker's remaining lifetime (``banyan-worker --time-limit``), while connected."""
    session = gateway.sessions.get(worker["name"])
    if session is not None:
        return session.remaining_s()
    remote = _elsewhere(gateway, worker)
    if remote is None or remote.deadline is None:
        return None
    return max(0.0, remote.deadline - time.time())


def responsive(gateway: Gateway, worker: dict[str, Any], heartbeat_interval_s: float) -> bool:
    """False for a connected worker not heard from for two heartbeat intervals:
    it is not lost yet (that takes ``worker_timeout_s``), but its tasks may
    not be running. A worker that left or was lost is not asked about. For a
    worker of another server one interval more is allowed: that server
    records when it heard it once per interval."""
    if worker["state"] != "connected":
        return True
    seen = gateway.last_seen.get(worker["name"])
    if seen is not None:
        return time.monotonic() - seen <= UNRESPONSIVE_HEARTBEATS * heartbeat_interval_s
    remote = _elsewhere(gateway, worker)
    if remote is None:
        return True
    return time.time() - remote.last_seen <= (UNRESPONSIVE_HEARTBEATS + 1) * heartbeat_interval_s


def _render(request: web.Request, worker: dict[str, Any]) -> dict[str, Any]:
    gateway = request.app[GATEWAY]
    date_format = settings(request).date_format
    state = worker_state(gateway, worker)
    seen = gateway.last_seen.get(worker["name"])
    now = time.time()
    last = now - (time.monotonic() - seen) if seen is not None else worker["last_seen"]
    return {
        "_id": worker["name"],
        "name": worker["name"],
        "state": state,
        "host": worker["host"],
        "pid": worker["pid"],
        "containment": worker.get("containment"),
        "queues": worker["queues"],
        "capacity": worker["capacity"],
        "free": _free(worker["capacity"], worker["running"]),
        "running": [
            {**a, "time_started": format_date(a["time_started"], date_format)}
            for a in worker["running"]
        ],
        "queued": worker["queued"],
        "last_heartbeat": format_date(last, date_format),
        "last_heartbeat_age_s": round(max(0.0, now - last), 3),
        "connected": format_date(worker["connected"], date_format),
        "left": format_date(worker["left"], date_format),
        "responsive": responsive(gateway, worker, settings(request).heartbeat_interval_s),
        "remaining_s": _rounded(remaining(gateway, worker)),
        "left_age_s": None if worker["left"] is None else round(max(0.0, now - worker["left"]), 3),
    }


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


@routes.get("/workers")
async def find(request: web.Request) -> web.Response:
    await require(request, ANY_ROLE)
    found = await read_workers(request)
    items = [_render(request, w) for w in found]
    return json_response({"_items": items, "_meta": {"total": len(items)}})


@routes.get("/workers/connect")
async def connect(request: web.Request) -> web.StreamResponse:
    return await request.app[GATEWAY].handle(request)


@routes.get("/workers/{name}")
async def read(request: web.Request) -> web.Response:
    await require(request, ANY_ROLE)
    found = await read_workers(request, request.match_info["name"])
    if not found:
        raise NotFound(f"no worker named {request.match_info['name']!r}")
    return json_response(_render(request, found[0]))


@routes.get("/tasks/{task_id}/logs")
async def logs(request: web.Request) -> web.Response:
    await require(request, ANY_ROLE)
    stream = single_arg(request, "stream")
    if stream not in (None, "stdout", "stderr"):
        raise BadRequest("stream is 'stdout' or 'stderr'")
    attempt = _int_arg(request, "attempt", minimum=1)
    tail = _int_arg(request, "tail", minimum=0)
    out = await request.app[STORE].read_logs(task_id(request), attempt=attempt, stream=stream)
    if tail is not None:
        for name in ("stdout", "stderr"):
            if name in out:
                lines = out[name].splitlines(keepends=True)
                out[name] = "".join(lines[-tail:]) if tail else ""
    return json_response(out)


@routes.post("/tasks/{task_id}/update_execution_data")
async def update_execution_data(request: web.Request) -> web.Response:
    caller = await require(request, WORKERS)
    the_id = task_id(request)
    data = await body(request)
    expect_kind(data, "object")
    update = validate(_EXECUTION, data, what="execution update")
    store = request.app[STORE]
    if update.percent is not None or update.message is not None:
        progress = update.model_dump(include={"percent", "message"}, exclude_none=True)
        await store.report_progress(the_id, update.execution_key, progress, caller)
    if update.exit_status is not None:
        await store.finish(
            the_id,
            update.execution_key,
            exit_status=update.exit_status,
            exit_code=update.exit_code,
            usage=update.usage,
            caller=caller,
        )
    doc = await store.get_task(the_id)
    return json_response(
        {**render.task(doc, settings(request).date_format, viewer=caller), "_status": "OK"}
    )


def _int_arg(request: web.Request, name: str, *, minimum: int) -> int | None:
    text = single_arg(request, name)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError as exc:
        raise BadRequest(f"{name} must be an integer, got {text!r}") from exc
    if value < minimum or value > 10**9:
        raise BadRequest(f"{name} must be between {minimum} and 10^9")
    return value
