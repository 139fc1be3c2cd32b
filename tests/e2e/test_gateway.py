"""The worker gateway (``GET /workers/connect``, SPEC §7) spoken to directly
over a websocket of the in-process test server: auth, bad frames, claims,
reports with right and wrong execution keys, and the server's pushes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from banyan.ids import new_id
from banyan.tokens import basic_auth_header
from server.keys import STORE
from tests.conftest import Api

pytestmark = pytest.mark.slow

CONNECT = "/workers/connect"
CLOSE_BAD_FRAME = 4400
FRAME_TIMEOUT_S = 5.0


def hello(name: str, **extra: Any) -> dict[str, Any]:
    return {"type": "hello", "name": name, "capacity": {"cores": 64, "memory": "64 GiB"}, **extra}


def auth(api: Api, who: str = "admin") -> dict[str, str]:
    """Headers for ``who``'s token: the admin's by default, which may run a
    worker of any name (a worker token's worker is the token's name)."""
    return {"Authorization": basic_auth_header(api.tokens[who])}


async def receive(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next frame of type ``kind``, skipping ``work_available`` pushes."""
    while True:
        msg = await ws.receive(timeout=FRAME_TIMEOUT_S)
        assert msg.type == WSMsgType.TEXT, (msg, ws.close_code)
        frame = json.loads(msg.data)
        if frame["type"] == kind:
            return dict(frame)
        assert frame["type"] == "work_available", frame


@asynccontextmanager
async def worker(api: Api, name: str, **hello_extra: Any) -> AsyncIterator[Any]:
    """A gateway connection past hello/welcome."""
    async with api.client.ws_connect(CONNECT, headers=auth(api)) as ws:
        await ws.send_str(json.dumps(hello(name, **hello_extra)))
        welcome = await receive(ws, "welcome")
        assert welcome["worker"] == name
        yield ws


async def claim(
    ws: aiohttp.ClientWebSocketResponse, free: dict[str, Any] | None = None, limit: int = 1
) -> list[dict[str, Any]]:
    await ws.send_str(json.dumps({"type": "claim", "free": free or {"cores": 64}, "limit": limit}))
    return list((await receive(ws, "assigned"))["attempts"])


async def submit_many(api: Api, n: int, **task: Any) -> list[str]:
    body = [{"command": "true", "state": "available", **task} for _ in range(n)]
    resp = await api.post("/tasks", body)
    assert resp.status == 201, resp
    return [item["_id"] for item in resp.body["_items"]]


async def total(api: Api) -> int:
    resp = await api.get("/tasks", params={"max_results": "1"})
    return int(resp.body["_meta"]["total"])


# --- auth ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"), [("alice", 403), (None, 401), ("bad", 401)], ids=["provider", "none", "bad"]
)
async def test_gateway_needs_a_worker_or_admin_token(
    api: Api, who: str | None, status: int
) -> None:
    headers: dict[str, str] = {}
    if who == "bad":
        headers = {"Authorization": basic_auth_header("byn_not-a-real-token")}
    elif who is not None:
        headers = auth(api, who)
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        async with api.client.ws_connect(CONNECT, headers=headers):
            pass
    assert caught.value.status == status


async def test_gateway_accepts_worker_and_admin_tokens(api: Api) -> None:
    for who, name in (("worker", "worker-1"), ("admin", "w-admin")):
        async with api.client.ws_connect(CONNECT, headers=auth(api, who)) as ws:
            await ws.send_str(json.dumps(hello(name)))
            welcome = await receive(ws, "welcome")
            assert welcome["worker"] == name
            assert welcome["heartbeat_interval_s"] > 0
            assert welcome["worker_timeout_s"] > 0
            assert welcome["server_timeout_s"] > 0


async def test_the_containment_a_hello_names_is_shown_and_a_hello_without_one_is_accepted(
    api: Api,
) -> None:
    # A worker older than the field says nothing: it joins as before.
    async with worker(api, "w-old"), worker(api, "w-new", containment="subreaper"):
        shown = (await api.get("/workers")).body["_items"]
        assert {w["name"]: w["containment"] for w in shown} == {
            "w-old": None,
            "w-new": "subreaper",
        }
        assert (await api.get("/workers/w-new")).body["containment"] == "subreaper"


# --- bad frames ------------------------------------------------------------------------------

BAD_FIRST_FRAMES = {
    "malformed-json": "{not json",
    "unknown-type": json.dumps({"type": "launch_missiles"}),
    "not-hello": json.dumps({"type": "heartbeat"}),
    "claim-first": json.dumps({"type": "claim", "free": {"cores": 1}}),
    "negative-cores": json.dumps(hello("w", capacity={"cores": -1})),
    "bad-memory": json.dumps(hello("w", capacity={"cores": 1, "memory": "lots"})),
    "capacity-not-object": json.dumps(hello("w", capacity="big")),
    "no-capacity": json.dumps({"type": "hello", "name": "w"}),
    "json-list": json.dumps([hello("w")]),
    "extra-field": json.dumps(hello("w", sudo=True)),
    "containment-empty": json.dumps(hello("w", containment="")),
    "containment-too-long": json.dumps(hello("w", containment="c" * 33)),
}
BAD_LATER_FRAMES = {
    "malformed-json": '{"type": "claim",',
    "unknown-type": json.dumps({"type": "launch_missiles"}),
    "hello-twice": json.dumps(hello("w")),
    "claim-limit-0": json.dumps({"type": "claim", "free": {"cores": 1}, "limit": 0}),
    "finished-bad-task-id": json.dumps(
        {"type": "finished", "task": "../etc", "execution_key": "k" * 20, "exit_status": "success"}
    ),
}


async def _closed_with_bad_frame(ws: aiohttp.ClientWebSocketResponse) -> None:
    while True:
        msg = await ws.receive(timeout=FRAME_TIMEOUT_S)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            break
        assert msg.type == WSMsgType.TEXT, msg
        assert json.loads(msg.data)["type"] in ("welcome", "work_available"), msg.data
    assert ws.close_code == CLOSE_BAD_FRAME


async def _store_intact(api: Api, ids: list[str], before: int) -> None:
    assert await total(api) == before
    for task_id in ids:
        task = await api.task(task_id)
        assert task["state"] == "available", task
        assert task["execution"] is None
    # The gateway still serves a well-behaved worker, and nothing was claimed.
    async with worker(api, "good") as ws:
        assert sorted(a["task"] for a in await claim(ws, limit=10)) == sorted(ids)


@pytest.mark.parametrize("frame", BAD_FIRST_FRAMES.values(), ids=BAD_FIRST_FRAMES.keys())
async def test_bad_first_frame_closes_with_4400(api: Api, frame: str) -> None:
    ids = await submit_many(api, 2)
    before = await total(api)
    async with api.client.ws_connect(CONNECT, headers=auth(api)) as ws:
        await ws.send_str(frame)
        await _closed_with_bad_frame(ws)
    await _store_intact(api, ids, before)


@pytest.mark.parametrize("frame", BAD_LATER_FRAMES.values(), ids=BAD_LATER_FRAMES.keys())
async def test_bad_frame_after_hello_closes_with_4400(api: Api, frame: str) -> None:
    ids = await submit_many(api, 2)
    before = await total(api)
    async with worker(api, "sloppy") as ws:
        await ws.send_str(frame)
        await _closed_with_bad_frame(ws)
    await _store_intact(api, ids, before)


async def test_binary_garbage_closes_with_4400(api: Api) -> None:
    async with api.client.ws_connect(CONNECT, headers=auth(api)) as ws:
        await ws.send_bytes(b"\xff\xfe\x00garbage")
        await _closed_with_bad_frame(ws)


# --- claims ------------------------------------------------------------------------------------


async def test_claim_hands_out_only_what_fits(api: Api) -> None:
    big = await api.submit(command="true", state="available", requested_resources={"cores": 4})
    hungry = await api.submit(
        command="true", state="available", requested_resources={"cores": 1, "memory": "8 GiB"}
    )
    small = await api.submit(
        command="echo hi",
        state="available",
        requested_resources={"cores": 1, "memory": "1 GiB"},
        max_termination_time="90s",
        env={"A": "b"},
    )
    held = await api.submit(command="true")  # inactive: never handed out
    async with worker(api, "w1") as ws:
        attempts = await claim(ws, {"cores": 2, "memory": "2 GiB"}, limit=10)
        assert [a["task"] for a in attempts] == [small]
        (attempt,) = attempts
        assert attempt["attempt"] == 1
        assert attempt["command"] == "echo hi"
        assert attempt["env"] == {"A": "b"}
        assert attempt["max_termination_time"] == 90
        assert len(attempt["execution_key"]) >= 8
        task = await api.task(small)
        assert task["state"] == "running"
        assert task["execution"]["worker"] == "w1"
        assert task["execution"]["attempt"] == 1
        assert "execution_key" not in json.dumps(task)  # the key stays with the worker
        # Nothing else fits what is left free.
        assert await claim(ws, {"cores": 1, "memory": "1 GiB"}, limit=10) == []
    for task_id in (big, hungry):
        assert (await api.task(task_id))["state"] == "available"
    assert (await api.task(held))["state"] == "inactive"


async def test_two_connections_claiming_concurrently_never_share_a_task(api: Api) -> None:
    ids = await submit_many(api, 50)
    async with worker(api, "racer-a") as a, worker(api, "racer-b") as b:

        async def drain(ws: aiohttp.ClientWebSocketResponse) -> list[str]:
            got: list[str] = []
            while True:
                attempts = await claim(ws, limit=3)
                if not attempts:
                    return got
                got += [x["task"] for x in attempts]

        got_a, got_b = await asyncio.gather(drain(a), drain(b))
    everything = got_a + got_b
    assert len(everything) == len(set(everything)), "a task was handed out twice"
    assert sorted(everything) == sorted(ids)
    assert got_a and got_b, "one connection got everything: no race happened"
    resp = await api.get("/tasks", params={"where": json.dumps({"execution.attempt": {"$gt": 1}})})
    assert resp.body["_meta"]["total"] == 0


# --- reports -------------------------------------------------------------------------------------


def finished(task: str, key: str, status: str = "success", code: int | None = 0) -> str:
    return json.dumps(
        {
            "type": "finished",
            "task": task,
            "execution_key": key,
            "exit_status": status,
            "exit_code": code,
        }
    )


async def test_reports_need_the_current_execution_key(api: Api) -> None:
    task_id = await api.submit(command="true", state="available")
    async with worker(api, "w1") as ws:
        (attempt,) = await claim(ws)
        key = attempt["execution_key"]

        await ws.send_str(finished(task_id, "not-the-key-" + "x" * 16))
        refused = await receive(ws, "refused")
        assert refused["task"] == task_id
        assert refused["code"] == 409
        message = refused["message"].lower()
        assert "does not belong to any attempt" in message, refused  # never valid
        assert (await api.task(task_id))["state"] == "running"

        unknown = new_id()
        await ws.send_str(finished(unknown, key))
        refused = await receive(ws, "refused")
        assert refused["task"] == unknown
        assert refused["code"] in (404, 409), refused

        await ws.send_str(finished(task_id, key))
        accepted = await receive(ws, "accepted")
        assert accepted == {"type": "accepted", "task": task_id, "execution_key": key}
        done = await api.task(task_id)
        assert done["state"] == "terminated"
        assert done["execution"]["exit_status"] == "success"

        # The same report again changes nothing.
        await ws.send_str(finished(task_id, key))
        msg = await ws.receive(timeout=FRAME_TIMEOUT_S)
        assert msg.type == WSMsgType.TEXT
        assert json.loads(msg.data)["type"] in ("accepted", "refused")
        again = await api.task(task_id)
        assert again["_etag"] == done["_etag"]
        assert again["state"] == "terminated"
        # A different end for the same attempt is refused.
        await ws.send_str(finished(task_id, key, "failure", 1))
        assert (await receive(ws, "refused"))["code"] == 409
    history = (await api.get(f"/tasks/{task_id}/history")).body["_items"]
    assert [(h["attempt"], h["exit_status"]) for h in history] == [(1, "success")]
    assert (await api.task(task_id))["_etag"] == done["_etag"]


async def test_progress_with_a_stale_key_is_refused(api: Api) -> None:
    task_id = await api.submit(command="true", state="available")
    async with worker(api, "w1") as ws:
        (attempt,) = await claim(ws)
        frame = {"type": "progress", "task": task_id, "percent": 50.0, "message": "half"}
        await ws.send_str(json.dumps({**frame, "execution_key": "stale-" + "y" * 16}))
        refused = await receive(ws, "refused")
        assert refused["code"] == 409
        await ws.send_str(json.dumps({**frame, "execution_key": attempt["execution_key"]}))

        async def progress() -> Any:
            for _ in range(100):
                task = await api.task(task_id)
                if task["execution"]["progress"]:
                    return task["execution"]["progress"]
                await asyncio.sleep(0.05)
            return None

        assert await progress() == {"percent": 50.0, "message": "half"}


async def _intruder_token(api: Api, name: str) -> str:
    resp = await api.post("/workers", {"name": name})
    assert resp.status == 201, resp
    return str(resp.body["token"])


@pytest.mark.parametrize("same_token", [False, True], ids=["own-token", "shared-token"])
async def test_another_workers_attempt_cannot_be_reported(api: Api, same_token: bool) -> None:
    """SPEC §5: a worker "claims and reports only on attempts it holds", even
    with the attempt's key and (in a fleet sharing one worker token) the same token."""
    task_id = await api.submit(command="true", state="available")
    # A fleet run from one admin token (a worker token runs one worker only).
    token = api.tokens["admin"] if same_token else await _intruder_token(api, "intruder")
    headers = {"Authorization": basic_auth_header(token)}
    async with (
        worker(api, "owner") as owner,
        api.client.ws_connect(CONNECT, headers=headers) as intruder,
    ):
        await intruder.send_str(json.dumps(hello("intruder")))
        await receive(intruder, "welcome")
        (attempt,) = await claim(owner)
        await intruder.send_str(finished(task_id, attempt["execution_key"], "failure", 1))
        refused = await receive(intruder, "refused")
        assert refused["code"] in (403, 409), refused
        assert (await api.task(task_id))["state"] == "running"
        await owner.send_str(finished(task_id, attempt["execution_key"]))
        await receive(owner, "accepted")
    history = (await api.get(f"/tasks/{task_id}/history")).body["_items"]
    assert [(h["worker"], h["exit_status"]) for h in history] == [("owner", "success")]


# --- pushes ---------------------------------------------------------------------------------


async def test_cancel_is_pushed_to_the_worker_holding_the_task(api: Api) -> None:
    task_id = await api.submit(command="sleep 100", state="available")
    async with worker(api, "w1") as ws:
        (attempt,) = await claim(ws)
        resp = await api.patch(f"/tasks/{task_id}", {"state": "pending_cancellation"})
        assert resp.status == 200, resp
        cancel = await receive(ws, "cancel")
        assert cancel == {
            "type": "cancel",
            "task": task_id,
            "execution_key": attempt["execution_key"],
        }
        await ws.send_str(finished(task_id, attempt["execution_key"], "cancelled", None))
        await receive(ws, "accepted")
    assert (await api.task(task_id))["state"] == "cancelled"


async def test_work_available_is_pushed_to_an_idle_worker(api: Api) -> None:
    async with worker(api, "idle") as ws:
        assert await claim(ws) == []
        await api.submit(command="true", state="available")
        msg = await ws.receive(timeout=FRAME_TIMEOUT_S)
        assert msg.type == WSMsgType.TEXT
        assert json.loads(msg.data) == {"type": "work_available"}
        assert len(await claim(ws)) == 1


async def test_work_available_only_for_the_queues_served(api: Api) -> None:
    async with worker(api, "gpu-only", queues=["gpu"]) as ws:
        await api.submit(command="true", state="available")  # queue "default"
        await api.submit(command="true", state="available", queue="gpu")
        msg = await ws.receive(timeout=FRAME_TIMEOUT_S)
        assert json.loads(msg.data) == {"type": "work_available"}
        await ws.send_str(json.dumps({"type": "claim", "free": {"cores": 64}, "limit": 10}))
        # Had the "default" task been announced too, a second push would come first.
        msg = await ws.receive(timeout=FRAME_TIMEOUT_S)
        frame = json.loads(msg.data)
        assert frame["type"] == "assigned", frame
        (attempt,) = frame["attempts"]
        task = await api.task(attempt["task"])
        assert task["queue"] == "gpu"


async def test_usage_keeps_the_cpu_use_the_worker_measured(api: Api) -> None:
    """A usage frame's ``cpu_percent`` is stored with the sample and carried by
    its ``task.usage`` event (the TUI's Workers view shows it)."""
    task_id = await api.submit(command="true", state="available")
    async with worker(api, "w1") as ws:
        (attempt,) = await claim(ws)
        frame = {"type": "usage", "task": task_id, "execution_key": attempt["execution_key"]}
        await ws.send_str(json.dumps({**frame, "time": 1.0e9, "resident_memory_bytes": 1 << 20,
                                      "cpu_percent": 150.5}))  # fmt: skip
        await ws.send_str(json.dumps({**frame, "time": 1.0e9 + 1, "resident_memory_bytes": 2048}))
        params = {"where": json.dumps({"task": task_id}), "sort": "time"}
        for _ in range(100):  # bounded poll: 100 x 50 ms
            samples = (await api.get("/memory_usage", params=params)).body["_items"]
            if len(samples) == 2:
                break
            await asyncio.sleep(0.05)
    assert [(s["resident_memory_bytes"], s["cpu_percent"]) for s in samples] == [
        (1 << 20, 150.5),
        (2048, None),
    ]
    busy = {"where": json.dumps({"cpu_percent": {"$gt": 100}})}
    assert [s["task"] for s in (await api.get("/memory_usage", params=busy)).body["_items"]] == [
        task_id
    ]
    events = await api.client.app[STORE].events_since(0)
    usage = [e["data"] for e in events if e["type"] == "task.usage"]
    assert [u.get("cpu_percent") for u in usage] == [150.5, None]
