"""``GET /stats``, ``GET /tasks/{id}/stats`` and ``GET /tasks/{id}/pending_reason``
against a live server; the trigger-kept counts and duration slots checked
against plain queries over the tables, at the store level, after random work."""

from __future__ import annotations

import bisect
import contextlib
import json
import math
import random
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from banyan.errors import BanyanError
from banyan.models import ContinuationEdit, TaskCreate, TaskPatch
from banyan.resources import Resources
from banyan.states import ABANDONED, FAILURE, SUCCESS, State
from banyan.tokens import Caller, Role, basic_auth_header
from server.app import create_app
from server.keys import STORE
from server.settings import Settings
from server.stores.sqlite import schema
from server.stores.sqlite.stats import PERCENTILES, SLOT_S, WINDOWS_S
from server.stores.sqlite.store import SqliteStore
from server.views.stats import explain
from tests.conftest import Api

STATES = [s.value for s in State]
WORKER = Caller("worker-1", Role.WORKER)
ADMIN = Caller("admin", Role.ADMIN)
BIG = Resources(cores=64, memory=2**40, gpus=8)
BUCKET_RATIO = 2 ** (1 / 8)  # migration 3's duration buckets


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def timed_api(
    aiohttp_client: Callable[..., Any], settings: Settings, clock: Clock
) -> AsyncIterator[Api]:
    """Like ``api``, on a store whose clock the test moves."""
    app = create_app(settings, store=SqliteStore(settings.db, clock=clock))
    client = await aiohttp_client(app)
    the_store = app[STORE]
    tokens = {
        "admin": await the_store.create_token("admin", Role.ADMIN),
        "worker": await the_store.create_token("worker-1", Role.WORKER),
    }
    yield Api(client, tokens)


async def claim(api: Api, queues: list[str] | None = None, **kw: Any) -> list[dict[str, Any]]:
    args: dict[str, Any] = {"worker": "w1", "token": "worker-1", "free": BIG, "limit": 100}
    args.update(kw)
    return await api.client.app[STORE].claim(queues=queues or ["default"], **args)


async def finish(
    api: Api, attempt: dict[str, Any], status: str = SUCCESS, *, caller: Caller = WORKER
) -> dict[str, Any]:
    return await api.client.app[STORE].finish(
        attempt["task"],
        attempt["execution_key"],
        exit_status=status,
        exit_code=0 if status == SUCCESS else 1,
        usage=None,
        caller=caller,
    )


async def stats(api: Api) -> dict[str, Any]:
    resp = await api.get("/stats")
    assert resp.status == 200, resp
    return dict(resp.body)


async def total(api: Api, **where: Any) -> int:
    resp = await api.get("/tasks", params={"where": json.dumps(where), "max_results": "1"})
    assert resp.status == 200, resp
    return int(resp.body["_meta"]["total"])


# --- GET /stats: tasks ----------------------------------------------------------


async def test_empty_server(api: Api) -> None:
    body = await stats(api)
    assert body == {
        "tasks": {
            "total": 0,
            "by_state": dict.fromkeys(STATES, 0),
            "by_queue": {},
            "oldest_available": {},
        },
        "workers": {
            "total": 0,
            "idle": 0,
            "busy": 0,
            "draining": 0,
            "disconnected": 0,
            "lost": 0,
            "left": 0,
            "capacity": {"cores": 0, "memory": 0, "gpus": 0},
            "in_use": {"cores": 0, "memory": 0, "gpus": 0},
        },
        "throughput": {"1m": 0, "5m": 0, "15m": 0},
        "wait_time_s": {"p50": None, "p90": None, "p99": None, "count": 0},
        "run_time_s": {"p50": None, "p90": None, "p99": None, "count": 0},
    }
    for role in ("alice", "worker"):
        assert (await api.get("/stats", as_=role)).status == 200
    assert (await api.get("/stats", as_=None)).status == 401


async def test_counts_agree_with_task_queries(api: Api) -> None:
    store = api.client.app[STORE]
    held = [await api.submit(command="h", queue="io") for _ in range(3)]
    await api.patch(f"/tasks/{held[0]}", {"state": "cancelled"})
    await api.patch(f"/tasks/{held[1]}", {"queue": "gpu"})
    bulk = [{"command": "b", "state": "available", "max_retry_count": 1} for _ in range(8)]
    assert (await api.post("/tasks", bulk)).status == 201
    child = await api.submit(command="child")
    await api.submit(command="parent", state="available", continuations=[child])
    await api.submit(name="group", state="available")  # terminates at once
    await api.submit(command="g", queue="gpu", state="available")
    attempts = await claim(api, limit=6)
    assert len(attempts) == 6
    await finish(api, attempts[0])
    await finish(api, attempts[1], FAILURE)  # retried: available again
    (retry,) = await claim(api, limit=1)
    await finish(api, retry, FAILURE)  # out of retries: terminated
    await api.patch(f"/tasks/{retry['task']}", {"state": "available"})  # a user retry
    await api.patch(f"/tasks/{attempts[2]['task']}", {"state": "pending_cancellation"})
    await finish(api, attempts[2], "cancelled")
    await api.patch(f"/tasks/{attempts[3]['task']}", {"state": "pending_cancellation"})
    assert len(await claim(api, ["gpu"], worker="w2", limit=1)) == 1
    assert len(await store.abandon_worker("w2")) == 1  # no retries left: terminated

    body = (await stats(api))["tasks"]
    assert body["total"] == await total(api) == 15
    for state in STATES:
        assert body["by_state"][state] == await total(api, state=state), state
    assert set(body["by_queue"]) == {"default", "io", "gpu"}
    for queue, counts in body["by_queue"].items():
        assert set(counts) == set(STATES)
        for state in STATES:
            assert counts[state] == await total(api, queue=queue, state=state), (queue, state)
    assert all(body["by_state"].values())  # the mix reached every state


async def test_oldest_available_per_queue(timed_api: Api, clock: Clock) -> None:
    first = await timed_api.submit(command="a", state="available")
    clock.now += 30
    await timed_api.submit(command="b", state="available")
    await timed_api.submit(command="c", state="available", queue="other")
    clock.now += 30
    await timed_api.submit(command="held", queue="held-only")
    oldest = (await stats(timed_api))["tasks"]["oldest_available"]
    assert set(oldest) == {"default", "other"}
    assert oldest["default"] == (await timed_api.task(first))["_created"]
    assert oldest["default"] == "Fri, 15 Jan 2027 08:00:00 GMT"
    assert oldest["other"] == "Fri, 15 Jan 2027 08:00:30 GMT"
    await claim(timed_api, limit=1)  # the oldest is taken first (same priority)
    oldest = (await stats(timed_api))["tasks"]["oldest_available"]
    assert oldest["default"] == "Fri, 15 Jan 2027 08:00:30 GMT"


# --- GET /stats: throughput and durations ------------------------------------


async def test_throughput_and_percentiles(timed_api: Api, clock: Clock) -> None:
    api = timed_api
    start = clock.now
    ids = [await api.submit(command=f"t{i}", state="available") for i in range(20)]
    assert len(ids) == 20
    # Attempt i waits 10 + i s and runs 1 + i s; they end spread over 20 minutes.
    # Every task was created at ``start``; attempt i starts at 62 i + 10 and
    # runs 1 + i seconds, so they end spread over 20 minutes.
    ended = []
    for i in range(20):
        clock.now = start + 62 * i + 10
        (attempt,) = await claim(api, limit=1)
        clock.now += 1 + i
        await finish(api, attempt, SUCCESS if i % 3 else FAILURE)
        ended.append(clock.now)
    # Each finish above happened at a time we know; look from a few points in time.
    # At start + 1163.5, attempt 4 (ended at start + 263) is just out of the 15-minute
    # window but inside its first slot: counted in the durations, not the throughput.
    for now in (start + 1163.5, start + 1200.5, start + 1203, start + 1500, start + 1234.567):
        clock.now = now
        body = await stats(api)
        for label, span in WINDOWS_S.items():
            expected = sum(1 for t in ended if t >= now - span)
            assert body["throughput"][label] == expected, (now, label)
        recent = [i for i, t in enumerate(ended) if in_duration_window(t, now)]
        assert body["wait_time_s"]["count"] == body["run_time_s"]["count"] == len(recent)
        if now == start + 1163.5:
            assert len(recent) == body["throughput"]["15m"] + 1
        waits = sorted(62.0 * i + 10 for i in recent)
        for p in PERCENTILES:
            exact_wait = nearest_rank(waits, p)
            exact_run = nearest_rank(sorted(1.0 + i for i in recent), p)
            assert close(body["wait_time_s"][f"p{p}"], exact_wait), (p, body)
            assert close(body["run_time_s"][f"p{p}"], exact_run), (p, body)


async def test_equal_durations_are_exact(timed_api: Api, clock: Clock) -> None:
    api = timed_api
    for _ in range(10):
        await api.submit(command="x", state="available")
    clock.now += 2.5
    attempts = await claim(api, limit=10)
    clock.now += 7.25
    for attempt in attempts:
        await finish(api, attempt)
    clock.now += 30
    body = await stats(api)
    assert body["throughput"] == {"1m": 10, "5m": 10, "15m": 10}
    assert body["wait_time_s"] == {"p50": 2.5, "p90": 2.5, "p99": 2.5, "count": 10}
    assert body["run_time_s"] == {"p50": 7.25, "p90": 7.25, "p99": 7.25, "count": 10}
    clock.now += 901
    body = await stats(api)
    assert body["throughput"] == {"1m": 0, "5m": 0, "15m": 0}
    assert body["run_time_s"] == {"p50": None, "p90": None, "p99": None, "count": 0}


async def test_wait_counts_from_when_the_task_became_available(
    timed_api: Api, clock: Clock
) -> None:
    """Time held (``inactive``) or waiting on a parent is not queue wait."""
    api = timed_api
    held = await api.submit(command="held")
    child = await api.submit(command="child")
    parent = await api.submit(command="parent", state="available", continuations=[child])
    clock.now += 100  # held and child wait; parent is queued
    await api.patch(f"/tasks/{held}", {"state": "available"})
    clock.now += 2
    first = {a["task"]: a for a in await claim(api, limit=10)}
    assert set(first) == {held, parent}
    clock.now += 1
    await finish(api, first[parent])  # child becomes available now
    await finish(api, first[held], FAILURE)  # no retries: terminated
    clock.now += 3
    (second,) = await claim(api, limit=10)
    assert second["task"] == child
    clock.now += 1
    await finish(api, second)
    waits = (await stats(api))["wait_time_s"]
    # held waited 2 s (not 102), parent 102 s, child 3 s (not 106).
    assert waits["count"] == 3
    assert close(waits["p50"], 3.0) and close(waits["p99"], 102.0), waits


async def test_a_retry_waits_from_its_requeue(timed_api: Api, clock: Clock) -> None:
    api = timed_api
    await api.submit(command="x", state="available", max_retry_count=1)
    clock.now += 5
    (first,) = await claim(api)
    clock.now += 50
    await finish(api, first, FAILURE)  # back to available: its wait starts again
    clock.now += 2
    (second,) = await claim(api)
    clock.now += 1
    await finish(api, second)
    waits = (await stats(api))["wait_time_s"]
    assert waits["count"] == 2
    assert waits["p50"] == 2.0 and waits["p99"] == 5.0, waits


def in_duration_window(end: float, now: float) -> bool:
    """Wait and run times cover whole slots: from the one 15 minutes ago holds."""
    return math.floor(end / SLOT_S) >= math.floor((now - 900) / SLOT_S)


def nearest_rank(ordered: list[float], p: int) -> float:
    return ordered[max(1, math.ceil(p * len(ordered) / 100)) - 1]


def close(estimate: float | None, exact: float) -> bool:
    """Within one duration bucket of the exact value."""
    assert estimate is not None
    return abs(estimate - exact) <= (BUCKET_RATIO - 1) * exact + 0.002


# --- GET /stats: workers ------------------------------------------------------


def hello(name: str, **extra: Any) -> dict[str, Any]:
    return {"type": "hello", "name": name, "capacity": {"cores": 4, "memory": "8 GiB"}, **extra}


async def receive(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        msg = await ws.receive(timeout=5)
        assert msg.type == WSMsgType.TEXT, (msg, ws.close_code)
        frame = json.loads(msg.data)
        if frame["type"] == kind:
            return dict(frame)
        assert frame["type"] == "work_available", frame


@asynccontextmanager
async def worker(api: Api, name: str, **hello_extra: Any) -> AsyncIterator[Any]:
    """A live gateway connection past hello/welcome."""
    headers = {"Authorization": basic_auth_header(api.tokens["admin"])}
    async with api.client.ws_connect("/workers/connect", headers=headers) as ws:
        await ws.send_str(json.dumps(hello(name, **hello_extra)))
        assert (await receive(ws, "welcome"))["worker"] == name
        yield ws


async def ws_claim(ws: aiohttp.ClientWebSocketResponse, limit: int = 1) -> list[dict[str, Any]]:
    await ws.send_str(json.dumps({"type": "claim", "free": {"cores": 64}, "limit": limit}))
    return list((await receive(ws, "assigned"))["attempts"])


async def until(check: Callable[[], Any], what: str) -> None:
    import asyncio

    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_workers_by_state_with_capacity_and_load(api: Api) -> None:
    await api.submit(command="x", state="available", requested_resources={"cores": 1.5})
    store = api.client.app[STORE]
    async with worker(api, "gone", capacity={"cores": 2}) as ws:
        await ws.send_str(json.dumps({"type": "bye"}))
    async with worker(api, "lost-one", capacity={"cores": 2}):
        pass  # dropped without bye: disconnected until it times out, lost below

    async def left() -> bool:
        return bool((await stats(api))["workers"]["left"] == 1)

    await until(left, "the bye")
    async with (
        worker(api, "spare", capacity={"cores": 1}),
        worker(api, "idle", capacity={"cores": 2, "memory": "1 GiB", "gpus": 1}),
        worker(api, "busy") as busy,
        worker(api, "drain", capacity={"cores": 0.5}) as drain,
    ):
        (attempt,) = await ws_claim(busy)
        await drain.send_str(json.dumps({"type": "heartbeat", "draining": True}))

        async def draining() -> bool:
            return bool((await stats(api))["workers"]["draining"] == 1)

        await until(draining, "the draining heartbeat")
        await store.leave_worker("lost-one", lost=True)
        body = (await stats(api))["workers"]
        listed = {w["name"]: w["state"] for w in (await api.get("/workers")).body["_items"]}
    assert listed == {
        "busy": "busy",
        "drain": "draining",
        "spare": "idle",
        "gone": "left",
        "idle": "idle",
        "lost-one": "lost",
    }
    assert body == {
        "total": 4,
        "idle": 2,
        "busy": 1,
        "draining": 1,
        "disconnected": 0,
        "lost": 1,
        "left": 1,
        "capacity": {"cores": 7.5, "memory": 8 * 2**30 + 2**30, "gpus": 1},
        "in_use": {"cores": 1.5, "memory": 0, "gpus": 0},
    }
    assert attempt["requested_resources"]["cores"] == 1.5


async def test_dropped_connection_counts_as_disconnected(api: Api) -> None:
    async with worker(api, "flaky"):
        pass

    async def dropped() -> bool:
        return bool((await stats(api))["workers"]["disconnected"] == 1)

    await until(dropped, "the server to see the connection drop")
    body = (await stats(api))["workers"]
    assert (body["total"], body["disconnected"], body["capacity"]["cores"]) == (0, 1, 0)


# --- GET /tasks/{id}/stats ------------------------------------------------------


async def test_tree_stats_over_a_diamond(api: Api) -> None:
    tail = await api.submit(name="tail group")
    join = await api.submit(command="join", continuations=[tail], estimated_runtime="5s")
    left = await api.submit(command="left", continuations=[join], estimated_runtime="20s")
    right = await api.submit(command="right", continuations=[join])
    root = await api.submit(command="root", continuations=[left, right], estimated_runtime=10)
    unrelated = await api.submit(command="other", estimated_runtime=1000)
    assert unrelated

    async def tree(task_id: str) -> dict[str, Any]:
        resp = await api.get(f"/tasks/{task_id}/stats")
        assert resp.status == 200, resp
        return dict(resp.body)

    body = await tree(root)
    assert body == {
        "_id": root,
        "total": 5,
        "by_state": {**dict.fromkeys(STATES, 0), "inactive": 5},
        "succeeded": 0,
        "failed": 0,
        "estimated_remaining_s": 35.0,
        "unestimated": 1,  # right; the group task takes no time
    }
    assert (await tree(left))["total"] == 3
    assert (await tree(tail))["total"] == 1

    await api.patch(f"/tasks/{root}", {"state": "available"})
    (first,) = await claim(api)
    body = await tree(root)
    assert body["by_state"]["running"] == 1 and body["estimated_remaining_s"] == 35.0
    await finish(api, first)
    branch = {a["task"]: a for a in await claim(api)}
    assert set(branch) == {left, right}
    body = await tree(root)
    assert body["by_state"]["running"] == 2 and body["succeeded"] == 1
    assert body["estimated_remaining_s"] == 25.0  # running ones count fully
    await finish(api, branch[left], FAILURE)  # no retries: join and tail are cancelled
    body = await tree(root)
    assert body["by_state"] == {
        **dict.fromkeys(STATES, 0),
        "terminated": 2,
        "running": 1,
        "cancelled": 2,
    }
    assert (body["succeeded"], body["failed"]) == (1, 1)
    assert (body["estimated_remaining_s"], body["unestimated"]) == (0.0, 1)
    await finish(api, branch[right])
    body = await tree(root)
    assert (body["succeeded"], body["failed"], body["unestimated"]) == (2, 1, 0)


@pytest.mark.parametrize("suffix", ["stats", "pending_reason"])
async def test_unknown_and_malformed_ids_are_404(api: Api, suffix: str) -> None:
    for bad in ("f" * 24, "not-an-id"):
        resp = await api.get(f"/tasks/{bad}/{suffix}")
        assert resp.status == 404, resp
        assert resp.body["_status"] == "ERR"
        assert resp.body["_error"]["code"] == 404
        assert "no task with id" in resp.body["_error"]["message"]


# --- GET /tasks/{id}/pending_reason ------------------------------------------


async def reason(api: Api, task_id: str) -> tuple[str, str]:
    resp = await api.get(f"/tasks/{task_id}/pending_reason")
    assert resp.status == 200, resp
    assert resp.body["_id"] == task_id
    assert resp.body["state"] == (await api.task(task_id))["state"]
    return resp.body["code"], resp.body["reason"]


async def test_pending_reason_before_any_worker(api: Api) -> None:
    held = await api.submit(command="h")
    assert await reason(api, held) == ("held", "held: make it available to run")
    join = await api.submit(command="j")
    await api.submit(command="a", continuations=[join])
    await api.submit(command="b", continuations=[join], state="available")
    assert await reason(api, join) == ("waiting_on_parents", "waiting on 2 parent task(s)")
    gpu = await api.submit(command="g", queue="gpu", state="available")
    code, text = await reason(api, gpu)
    assert code == "no_worker_for_queue" and "'gpu'" in text
    group = await api.submit(name="group", state="available")
    assert (await reason(api, group))[0] == "not_pending"
    cancelled = await api.submit(command="c")
    await api.patch(f"/tasks/{cancelled}", {"state": "cancelled"})
    assert await reason(api, cancelled) == ("not_pending", "cancelled")


async def test_pending_reason_with_workers(api: Api) -> None:
    small = await api.submit(command="s", state="available", priority=9)
    big = await api.submit(command="b", state="available", requested_resources={"cores": 8})
    huge = await api.submit(
        command="m", state="available", requested_resources={"cores": 2, "memory": "64 GiB"}
    )
    other = await api.submit(command="o", state="available", queue="other")
    async with (
        worker(api, "w-a", capacity={"cores": 4, "memory": "8 GiB"}) as ws,
        worker(api, "w-b", capacity={"cores": 2, "memory": "16 GiB"}, queues=["other"]) as wb,
    ):
        assert await reason(api, big) == (
            "insufficient_resources",
            "needs 8 cores; the largest worker serving 'default' has 4",
        )
        assert await reason(api, huge) == (
            "insufficient_resources",
            "needs 64 GiB of memory; the largest worker serving 'default' has 8 GiB",
        )
        code, text = await reason(api, small)
        assert code == "queued" and "w-a" in text
        (attempt,) = await ws_claim(ws)
        assert attempt["task"] == small
        running = await reason(api, small)
        assert running == ("not_pending", "running on worker 'w-a'")
        four = await api.submit(command="4", state="available", requested_resources={"cores": 4})
        fits_now = await api.submit(command="1", state="available")
        assert await reason(api, four) == (
            "busy",
            "1 worker(s) serving 'default' could run it, but none has enough free right now",
        )
        assert (await reason(api, fits_now))[0] == "queued"
        await wb.send_str(json.dumps({"type": "heartbeat", "draining": True}))

        async def drained() -> bool:
            return (await reason(api, other))[0] == "no_worker_for_queue"

        await until(drained, "the draining heartbeat")
        code, text = await reason(api, other)
        assert text == "no connected worker serves queue 'other' (1 draining worker(s) do)"
    await finish(api, attempt, caller=ADMIN)  # its gateway worker ran on the admin token
    assert await reason(api, small) == ("not_pending", "terminated: success")


def test_explain_when_no_single_worker_has_everything() -> None:
    task = {
        "state": "available",
        "queue": "default",
        "requested_resources": {"cores": 4, "memory": 2**33, "gpus": 0},
    }
    workers = [
        ("idle", {"name": "cpu", "queues": ["default"], "capacity": {"cores": 8}, "running": []}),
        (
            "idle",
            {
                "name": "mem",
                "queues": ["default"],
                "capacity": {"cores": 1, "memory": 2**34},
                "running": [],
            },
        ),
    ]
    code, text = explain(task, workers)
    assert code == "insufficient_resources"
    assert text.startswith("no single worker serving 'default' has all it needs at once")
    gpu_task = {**task, "requested_resources": {"cores": 1, "gpus": 2, "licences": 3}}
    code, text = explain(gpu_task, workers)
    assert text == (
        "needs 2 GPUs; the largest worker serving 'default' has 0; "
        "needs 3 licences; the largest worker serving 'default' has 0"
    )


# --- the counts kept by triggers ----------------------------------------------


async def group_by(store: SqliteStore) -> tuple[dict[tuple[str, str], int], ...]:
    def run(conn: sqlite3.Connection) -> tuple[dict[tuple[str, str], int], ...]:
        kept = conn.execute("SELECT queue, state, n FROM task_counts WHERE n != 0").fetchall()
        counted = conn.execute("SELECT queue, state, count(*) FROM tasks GROUP BY 1, 2").fetchall()
        return {(q, s): n for q, s, n in kept}, {(q, s): n for q, s, n in counted}

    return await store.db.read(run)


async def raw_durations(store: SqliteStore) -> list[tuple[float, float, float]]:
    """(end, wait, run) of every finished attempt, from the tables themselves."""

    def run(conn: sqlite3.Connection) -> list[tuple[float, float, float]]:
        rows = conn.execute(
            "SELECT a.time_terminated, a.time_started - coalesce(("
            # the last time the task became available before the attempt, by its events
            "  SELECT e.time FROM events e WHERE e.task_id = a.task_id "
            "  AND e.type = 'task.state' AND json_extract(e.data, '$.state') = 'available' "
            "  AND e.seq < (SELECT c.seq FROM events c WHERE c.task_id = a.task_id "
            "    AND c.type = 'task.state' AND json_extract(c.data, '$.state') = 'running' "
            "    AND json_extract(c.data, '$.attempt') = a.attempt) "
            "  ORDER BY e.seq DESC LIMIT 1), t.created), "
            "a.time_terminated - a.time_started FROM attempts a JOIN tasks t ON t.id = a.task_id "
            "WHERE a.time_terminated IS NOT NULL"
        ).fetchall()
        return [(e, max(w, 0.0), max(r, 0.0)) for e, w, r in rows]

    return await store.db.read(run)


QUEUES = ["default", "gpu", "io"]


@pytest.mark.parametrize("seed", range(6))
async def test_random_work_keeps_counts_and_durations_exact(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    clock = Clock()
    store = SqliteStore(tmp_path / "random.db", clock=clock)
    await store.open()
    ids: list[str] = []
    held: dict[str, str] = {}  # task -> execution key of its open attempt
    try:
        for step in range(160):
            clock.now += rng.choice([0.0, 0.4, 3.0, 9.99, 10.0, 45.0])
            with contextlib.suppress(BanyanError):  # refused: nothing may have changed
                await random_operation(store, rng, ids, held)
            kept, counted = await group_by(store)
            assert kept == counted, (seed, step)
        for offset in (0.0, 3.3, 120.0, 600.0, 899.0):
            clock.now += offset
            body = await store.statistics()
            finished = await raw_durations(store)
            assert sum(body["tasks"]["by_state"].values()) == len(ids)
            for label, span in WINDOWS_S.items():
                expected = sum(1 for end, _, _ in finished if end >= clock.now - span)
                assert body["throughput"][label] == expected, (seed, offset, label)
            recent = [(w, r) for end, w, r in finished if in_duration_window(end, clock.now)]
            assert body["run_time_s"]["count"] == len(recent)
            for p in PERCENTILES:
                for key, values in (
                    ("wait_time_s", [w for w, _ in recent]),
                    ("run_time_s", [r for _, r in recent]),
                ):
                    got = body[key][f"p{p}"]
                    if not values:
                        assert got is None
                    else:
                        assert same_bucket(got, nearest_rank(sorted(values), p)), (key, p)
    finally:
        await store.close()


def same_bucket(estimate: float, exact: float) -> bool:
    # The estimate is the mean of the bucket holding the exact value, rounded to ms.
    edges = [0.001 * BUCKET_RATIO**k for k in range(301)]
    lo = bisect.bisect_right(edges, exact)
    low = edges[lo - 1] if lo else 0.0
    high = edges[lo] if lo < len(edges) else math.inf
    return low - 0.001 <= estimate <= high + 0.001


async def random_operation(
    store: SqliteStore, rng: random.Random, ids: list[str], held: dict[str, str]
) -> None:
    roll = rng.random()
    if roll < 0.25 or not ids:
        count = rng.randint(1, 4)
        items = []
        for _ in range(count):
            fields: dict[str, Any] = {
                "queue": rng.choice(QUEUES),
                "state": rng.choice(["inactive", "available"]),
                "max_retry_count": rng.randint(0, 2),
            }
            if rng.random() < 0.9:
                fields["command"] = "true"
            if ids and rng.random() < 0.3:
                fields["continuations"] = rng.sample(ids, k=min(len(ids), rng.randint(1, 2)))
            items.append(TaskCreate.model_validate(fields))
        created = await store.create_tasks(items, ADMIN)
        ids.extend(c["_id"] for c in created)
    elif roll < 0.45:
        target = rng.choice(["available", "cancelled", "pending_cancellation", "inactive"])
        await store.update_task(rng.choice(ids), TaskPatch.model_validate({"state": target}), ADMIN)
    elif roll < 0.5:
        patch = TaskPatch.model_validate({"queue": rng.choice(QUEUES)})
        await store.update_task(rng.choice(ids), patch, ADMIN)
    elif roll < 0.55:
        edit = ContinuationEdit.model_validate(
            {"targets": [rng.choice(ids)], "values": [rng.choice(ids)]}
        )
        await store.edit_continuations([edit], ADMIN, add=rng.random() < 0.6)
    elif roll < 0.75:
        for attempt in await store.claim(
            worker="w1",
            token="worker-1",
            free=BIG,
            queues=rng.sample(QUEUES, k=rng.randint(1, 3)),
            limit=rng.randint(1, 3),
        ):
            held[attempt["task"]] = attempt["execution_key"]
    elif roll < 0.97 and held:
        task = rng.choice(sorted(held))
        key = held.pop(task)
        status = rng.choice([SUCCESS, SUCCESS, FAILURE, "cancelled", "failure (SIGKILL)"])
        await store.finish(task, key, exit_status=status, exit_code=None, usage=None, caller=WORKER)
    else:
        await store.abandon_worker("w1")
        held.clear()


def test_migration_backfills_existing_rows(tmp_path: Path) -> None:
    import time

    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    conn.executescript(schema.MIGRATIONS[0])
    conn.executescript(schema.MIGRATIONS[1])
    conn.execute("PRAGMA user_version = 2")
    now = time.time()
    rows = []
    for i in range(60):
        rows.append(
            (f"{i:024x}", "true", STATES[i % 6], QUEUES[i % 3], 0, 0, 600.0, "{}", 1.0, 0, 0,
             "admin", now - 100, now - 100, "e")
        )  # fmt: skip
    conn.executemany(
        "INSERT INTO tasks (id, command, state, queue, priority, max_retry_count, "
        "max_termination_time, requested_resources, cores, memory, gpus, owner, created, "
        "updated, etag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.executemany(
        "INSERT INTO attempts (task_id, attempt, execution_key, worker, token, time_started, "
        "time_terminated, exit_status) VALUES (?, 1, 'k', 'w', 'w', ?, ?, 'success')",
        [(f"{i:024x}", now - 90, now - 90 + i) for i in range(0, 60, 6)]
        + [(f"{i:024x}", now - 5000, now - 4000) for i in range(1, 60, 6)],
    )
    assert schema.migrate(conn) == 2
    kept = dict(((q, s), n) for q, s, n in conn.execute("SELECT * FROM task_counts"))
    counted = dict(
        ((q, s), n)
        for q, s, n in conn.execute("SELECT queue, state, count(*) FROM tasks GROUP BY 1, 2")
    )
    assert kept == counted and sum(kept.values()) == 60
    (recent,) = conn.execute("SELECT sum(n) FROM attempt_durations WHERE kind = 1").fetchone()
    assert recent == 10  # those of the last 1,000 s; older ones are out of every window
    (waits,) = conn.execute("SELECT sum(total_s) FROM attempt_durations WHERE kind = 0").fetchone()
    assert waits == pytest.approx(10 * 10.0)
    conn.close()


def test_migration_splitter_keeps_trigger_bodies_whole() -> None:
    for script in schema.MIGRATIONS[:2]:  # the earlier migrations split as they always did
        assert schema._statements(script) == [s.strip() for s in script.split(";") if s.strip()]
    triggers = [s for s in schema._statements(schema.MIGRATIONS[2]) if "CREATE TRIGGER" in s]
    assert len(triggers) == 4 and all(t.endswith("END") for t in triggers)
    assert SLOT_S == 10 and "time_terminated / 10 " in triggers[-1]


async def test_abandoned_attempts_are_counted(timed_api: Api, clock: Clock) -> None:
    await timed_api.submit(command="x", state="available")
    await claim(timed_api, limit=1)
    clock.now += 4
    abandoned = await timed_api.client.app[STORE].abandon_worker("w1")
    assert len(abandoned) == 1
    body = await stats(timed_api)
    assert body["throughput"]["1m"] == 1 and body["run_time_s"]["p50"] == 4.0
    history = await timed_api.get(f"/tasks/{abandoned[0]}/history")
    assert history.body["_items"][0]["exit_status"] == ABANDONED


async def test_statistics_reads_keep_their_plans(store: SqliteStore) -> None:
    """What keeps the reads fast at a million tasks: the tree walk drives the
    task lookups, the window sums need no sort, nothing scans ``tasks``."""
    from server.stores.sqlite import stats as queries

    def plans(conn: sqlite3.Connection) -> dict[str, str]:
        found = {}
        for name, sql, params in (
            ("tree", queries._TREE, {"id": "0" * 24, "success": SUCCESS}),
            ("buckets", queries._SLOT_BUCKETS, (0,)),
            (
                "counts",
                queries._SLOT_COUNTS,
                {"from_1m": 0, "from_5m": 0, "from_15m": 0, "oldest": 0},
            ),
            ("edge", queries._EDGE_COUNT, {"start": 0, "end": 0, "first": 0}),
            ("oldest", queries._OLDEST_AVAILABLE, ("default",)),
        ):
            rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            found[name] = " | ".join(r[3] for r in rows)
        return found

    found = await store.db.read(plans)
    assert "SEARCH t USING PRIMARY KEY" in found["tree"], found["tree"]
    assert "TEMP B-TREE" not in found["buckets"], found["buckets"]
    assert "PRIMARY KEY (kind=?)" in found["counts"], found["counts"]
    assert "attempts_terminated" in found["edge"], found["edge"]
    assert all("SCAN tasks" not in plan and "SCAN t " not in plan for plan in found.values())


async def test_pending_reason_says_queued_only_for_what_the_next_claims_hand_out(
    api: Api,
) -> None:
    """Issue 11: a worker with 2 free cores and three 1-core tasks in line runs
    the first two; the third is "busy" (not "should start momentarily"), and
    so is a task of lower priority; a higher-priority newcomer jumps the line."""
    first, second, third = [await api.submit(command=c, state="available") for c in "abc"]
    low = await api.submit(command="l", state="available", priority=-1)
    async with worker(api, "w-2", capacity={"cores": 2}, queues=["default", "extra"]):
        assert (await reason(api, first))[0] == "queued"
        assert (await reason(api, second))[0] == "queued"
        for waiting in (third, low):
            assert await reason(api, waiting) == (
                "busy",
                "1 worker(s) serving 'default' have room for it, but tasks ahead of it in line "
                "(higher priority, or older) take that room first",
            )
        # Tasks ahead come from every queue the worker serves, in one order.
        urgent = await api.submit(command="u", state="available", priority=5, queue="extra")
        assert (await reason(api, urgent))[0] == "queued"
        assert (await reason(api, second))[0] == "busy"
