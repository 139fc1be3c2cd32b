"""Who is woken when tasks become available: as many workers of the queue as
tasks arrived (idle ones with the most free cores first), not all of them;
a worker woken by name whose claim finds nothing it can start wakes the
others. And the workers a submit's warnings are computed from are read again
as soon as one joins or leaves. Against a live server with live gateway
connections."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from typing import Any

import aiohttp

from server.keys import GATEWAY
from tests.conftest import Api
from tests.server.test_stats import receive, until, worker

Ws = aiohttp.ClientWebSocketResponse


async def idle(ws: Ws, free: dict[str, Any]) -> None:
    """Claim with ``free`` and find nothing: the worker now waits to be woken."""
    await ws.send_str(json.dumps({"type": "claim", "free": free, "limit": 4}))
    assert (await receive(ws, "assigned"))["attempts"] == []


async def frame(ws: Ws) -> dict[str, Any]:
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.TEXT, (msg, ws.close_code)
    return dict(json.loads(msg.data))


async def first_woken(sockets: dict[str, Ws]) -> str:
    """The name of the one worker that gets a frame first; it must be
    ``work_available``, and no other socket may have had one by then."""
    waits = {asyncio.ensure_future(frame(ws)): name for name, ws in sockets.items()}
    done, pending = await asyncio.wait(waits, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)  # their sockets may be read again
    assert [t.result()["type"] for t in done] == ["work_available"], [waits[t] for t in done]
    return waits[done.pop()]


async def frames_before_a_heartbeat_ack(ws: Ws) -> list[str]:
    """The types of the frames the server sent before answering a heartbeat sent now."""
    await ws.send_str(json.dumps({"type": "heartbeat", "seq": 7}))
    seen = []
    while (got := await frame(ws))["type"] != "heartbeat_ack":
        seen.append(got["type"])
    return seen


async def test_one_new_task_wakes_one_idle_worker_not_all(api: Api) -> None:
    async with AsyncExitStack() as stack:
        sockets = {
            name: await stack.enter_async_context(worker(api, name, capacity={"cores": 4}))
            for name in ("w1", "w2", "w3", "w4")
        }
        for ws in sockets.values():
            await idle(ws, {"cores": 4})
        task = await api.submit(command="x", state="available")
        woken = await first_woken(sockets)
        for name, ws in sockets.items():
            if name != woken:
                assert await frames_before_a_heartbeat_ack(ws) == [], name
        await sockets[woken].send_str(json.dumps({"type": "claim", "free": {"cores": 4}}))
        (attempt,) = (await receive(sockets[woken], "assigned"))["attempts"]
        assert attempt["task"] == task


async def test_as_many_tasks_as_workers_wake_them_all(api: Api) -> None:
    async with AsyncExitStack() as stack:
        sockets = {
            name: await stack.enter_async_context(worker(api, name, capacity={"cores": 4}))
            for name in ("w1", "w2", "w3")
        }
        for ws in sockets.values():
            await idle(ws, {"cores": 4})
        resp = await api.post("/tasks", [{"command": "x", "state": "available"}] * 3)
        assert resp.status == 201, resp
        for ws in sockets.values():
            assert (await frame(ws))["type"] == "work_available"


async def test_a_woken_worker_that_cannot_fit_the_task_wakes_one_that_can(api: Api) -> None:
    """The idle worker with the most free cores is woken first; it has no GPU,
    finds nothing, and the small GPU worker is woken and gets the task."""
    async with (
        worker(api, "big", capacity={"cores": 8}) as big,
        worker(api, "gpu", capacity={"cores": 2, "gpus": 1}) as gpu,
    ):
        await idle(big, {"cores": 8})
        await idle(gpu, {"cores": 2, "gpus": 1})
        task = await api.submit(
            command="x", state="available", requested_resources={"cores": 1, "gpus": 1}
        )
        assert await first_woken({"big": big, "gpu": gpu}) == "big"
        await idle(big, {"cores": 8})  # its claim finds nothing it can run
        assert (await frame(gpu))["type"] == "work_available"
        await gpu.send_str(json.dumps({"type": "claim", "free": {"cores": 2, "gpus": 1}}))
        (attempt,) = (await receive(gpu, "assigned"))["attempts"]
        assert attempt["task"] == task


async def test_a_woken_worker_that_leaves_wakes_the_others(api: Api) -> None:
    async with worker(api, "stays", capacity={"cores": 2}) as stays:
        async with worker(api, "leaves", capacity={"cores": 8}) as leaves:
            await idle(stays, {"cores": 2})
            await idle(leaves, {"cores": 8})
            await api.submit(command="x", state="available")
            assert await first_woken({"stays": stays, "leaves": leaves}) == "leaves"
        assert (await frame(stays))["type"] == "work_available"


async def test_a_submits_warning_follows_a_worker_joining_and_leaving_at_once(api: Api) -> None:
    never = "no connected worker serves queue 'default'"
    before = await api.post("/tasks", {"command": "x"})
    assert never in before.body["_warnings"][0]
    sessions = api.client.app[GATEWAY].sessions
    async with worker(api, "w1", capacity={"cores": 2}) as ws:
        joined = await api.post("/tasks", {"command": "x"}, params={"require_fit": "1"})
        assert joined.status == 201 and "_warnings" not in joined.body, joined
        await ws.send_str(json.dumps({"type": "bye"}))
        assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.CLOSE  # answered

        async def gone() -> bool:
            return "w1" not in sessions

        await until(gone, "w1 to leave")
        left = await api.post("/tasks", {"command": "x"})
        assert never in left.body["_warnings"][0]
