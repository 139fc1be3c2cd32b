"""A worker's identity is its token (issue 11), spoken to the gateway of the
in-process test server over real websockets: a worker token names one
worker; one live connection per worker, unless the same process proves
itself with the secret from its ``welcome``; ``host`` and ``pid`` (public in
``GET /workers``) prove nothing; a revoked token (by ``banyan-server token
revoke``, another process) loses its gateway and feed sockets at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from banyan.tokens import basic_auth_header
from server.settings import Settings
from testbed.procs import BIN
from tests.conftest import Api
from tests.e2e.test_gateway import CONNECT, FRAME_TIMEOUT_S, claim, finished, hello, receive

pytestmark = pytest.mark.slow

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_DUPLICATE = 4409
CLOSE_REPLACED = 4410
CLOSE_TRY_AGAIN = 1013


def headers(token: str) -> dict[str, str]:
    return {"Authorization": basic_auth_header(token)}


def nameless(**extra: Any) -> dict[str, Any]:
    """A hello that names no worker: the token names it."""
    frame = hello("-", **extra)
    del frame["name"]
    return frame


@asynccontextmanager
async def connect(
    api: Api, token: str, frame: dict[str, Any]
) -> AsyncIterator[tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]]:
    """A gateway connection past its welcome."""
    async with api.client.ws_connect(CONNECT, headers=headers(token)) as ws:
        await ws.send_str(json.dumps(frame))
        yield ws, await receive(ws, "welcome")


async def refused(api: Api, token: str, frame: dict[str, Any]) -> tuple[int, str]:
    """The close code and reason a connection with ``frame`` as its hello gets."""
    async with api.client.ws_connect(CONNECT, headers=headers(token)) as ws:
        await ws.send_str(json.dumps(frame))
        msg = await ws.receive(timeout=FRAME_TIMEOUT_S)
        assert msg.type == WSMsgType.CLOSE, msg
        return int(msg.data), str(msg.extra)


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> int:
    """Read until the server closes ``ws``; its close code."""
    while True:
        msg = await ws.receive(timeout=FRAME_TIMEOUT_S)
        if msg.type == WSMsgType.CLOSE:
            return int(msg.data)
        assert msg.type == WSMsgType.TEXT, msg


async def history(api: Api, task_id: str) -> list[tuple[str, str | None]]:
    items = (await api.get(f"/tasks/{task_id}/history")).body["_items"]
    return [(h["worker"], h["exit_status"]) for h in items]


# --- a worker token names one worker ---------------------------------------------------


async def test_a_worker_token_names_its_worker(api: Api) -> None:
    token = api.tokens["worker"]
    async with connect(api, token, nameless()) as (_, welcome):
        assert welcome["worker"] == "worker-1"
        assert len(welcome["secret"]) >= 32
    async with connect(api, token, hello("worker-1")) as (_, welcome):
        assert welcome["worker"] == "worker-1"  # the same name, declared: fine
    code, reason = await refused(api, token, hello("someone-else"))
    assert code == CLOSE_FORBIDDEN
    assert "worker-1" in reason and "someone-else" in reason


async def test_a_provider_registered_worker_is_named_by_its_token(api: Api) -> None:
    resp = await api.post("/workers", {"name": "gpu-7"}, as_="alice")
    assert resp.status == 201, resp
    assert resp.body["name"] == "alice:gpu-7"
    async with connect(api, resp.body["token"], nameless()) as (_, welcome):
        assert welcome["worker"] == "alice:gpu-7"
    workers = (await api.get("/workers")).body["_items"]
    assert "alice:gpu-7" in {w["name"] for w in workers}


async def test_an_admin_token_names_any_worker_or_host_pid(api: Api) -> None:
    admin = api.tokens["admin"]
    async with connect(api, admin, hello("anything")) as (_, welcome):
        assert welcome["worker"] == "anything"
    async with connect(api, admin, nameless(host="node-3", pid=77)) as (_, welcome):
        assert welcome["worker"] == "node-3:77"


# --- one live connection per worker ------------------------------------------------------


async def test_a_second_process_is_refused_the_same_process_replaces_its_socket(
    api: Api,
) -> None:
    token = api.tokens["worker"]
    task_id = await api.submit(command="sleep 100", state="available")
    async with connect(api, token, nameless(host="h1", pid=10)) as (first, welcome):
        (attempt,) = await claim(first)
        key = attempt["execution_key"]
        # Another process with the same token (a clone): refused, whatever it says.
        for frame in (
            nameless(host="h2", pid=20),
            nameless(host="h1", pid=10),  # host and pid are public: no proof
            nameless(host="h1", pid=10, secret="x" * 43),
            nameless(running=[{"task": task_id, "execution_key": key}]),
        ):
            code, reason = await refused(api, token, frame)
            assert code == CLOSE_DUPLICATE, (code, reason)
            assert "already connected" in reason
        assert await claim(first) == []  # the first connection is untouched
        assert (await api.task(task_id))["execution"]["worker"] == "worker-1"

        # The same process (its secret), while its old socket still looks open
        # (a half-dead TCP connection): it replaces that socket and goes on.
        again = nameless(
            host="h1",
            pid=10,
            secret=welcome["secret"],
            running=[{"task": task_id, "execution_key": key}],
        )
        async with connect(api, token, again) as (second, rewelcome):
            assert rewelcome["resumed"] == [task_id]
            assert rewelcome["secret"] != welcome["secret"]  # a new one each connection
            assert await closed_with(first) == CLOSE_REPLACED
            await second.send_str(finished(task_id, key))
            await receive(second, "accepted")
    assert await history(api, task_id) == [("worker-1", "success")]


async def test_stolen_identity_from_public_host_and_pid_is_refused(api: Api) -> None:
    """The issue's takeover: a second token connects as an existing worker,
    with the host and pid that ``GET /workers`` shows. Refused; the task
    keeps running on its worker and is not started anywhere else."""
    task_id = await api.submit(command="sleep 100", state="available")
    async with connect(api, api.tokens["worker"], nameless(host="h1", pid=10)) as (ws, _):
        (attempt,) = await claim(ws)
        shown = (await api.get("/workers/worker-1")).body
        frame = hello("worker-1", host=shown["host"], pid=shown["pid"])
        thief = await api.post("/workers", {"name": "thief"}, as_="alice")
        code, _ = await refused(api, thief.body["token"], frame)
        assert code == CLOSE_FORBIDDEN  # a worker token runs its own worker only
        code, _ = await refused(api, api.tokens["admin"], frame)
        assert code == CLOSE_DUPLICATE  # not even an admin's may take a live one over
        task = await api.task(task_id)
        assert task["state"] == "running" and task["execution"]["attempt"] == 1
        await ws.send_str(finished(task_id, attempt["execution_key"]))
        await receive(ws, "accepted")
    assert await history(api, task_id) == [("worker-1", "success")]


async def test_a_cut_off_worker_holding_attempts_is_waited_for(api: Api) -> None:
    """A worker cut off mid-task may come back within worker_timeout_s: until
    it is lost, another process of its name must try again later (1013), and
    the one that comes back with its secret re-attaches."""
    token = api.tokens["worker"]
    task_id = await api.submit(command="sleep 100", state="available")
    async with connect(api, token, nameless()) as (ws, welcome):
        (attempt,) = await claim(ws)
    # The socket closed without a bye: a dropped connection.
    code, reason = await refused(api, token, nameless(host="other", pid=1))
    assert code == CLOSE_TRY_AGAIN
    assert "try again" in reason
    held = [{"task": task_id, "execution_key": attempt["execution_key"]}]
    async with connect(api, token, nameless(secret=welcome["secret"], running=held)) as (
        ws,
        rewelcome,
    ):
        assert rewelcome["resumed"] == [task_id]
        await ws.send_str(finished(task_id, attempt["execution_key"]))
        await receive(ws, "accepted")
        await ws.send_str(json.dumps({"type": "bye"}))
        assert await closed_with(ws) == 1000
    # It left: a new process of the name is welcome at once.
    async with connect(api, token, nameless(host="other", pid=1)) as (_, welcome):
        assert welcome["worker"] == "worker-1"


# --- revocation ----------------------------------------------------------------------


def revoke(settings: Settings, name: str) -> float:
    """``banyan-server token revoke NAME`` (another process on the same
    database); the wall-clock time it recorded as the revocation's (taken just
    before its commit: latencies measured from it are upper bounds)."""
    done = subprocess.run(
        [str(BIN / "banyan-server"), "token", "revoke", name, "--db", str(settings.db)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with contextlib.closing(sqlite3.connect(settings.db)) as conn:
        (revoked,) = conn.execute("SELECT revoked FROM tokens WHERE name = ?", (name,)).fetchone()
    return float(revoked)


async def test_revocation_closes_the_gateway_and_the_feed_and_refuses_reports(
    api: Api, settings: Settings
) -> None:
    token = api.tokens["worker"]
    task_id = await api.submit(command="sleep 100", state="available")
    async with (
        connect(api, token, nameless()) as (ws, _),
        api.client.ws_connect("/events", headers=headers(token)) as feed,
    ):
        assert json.loads((await feed.receive(timeout=FRAME_TIMEOUT_S)).data)["type"] == (
            "feed.hello"
        )
        (attempt,) = await claim(ws)
        revoked_at = await asyncio.to_thread(revoke, settings, "worker-1")
        # Sent after the revocation committed: not applied, whether the socket
        # is still open (refused, 401) or already closed.
        with contextlib.suppress(ConnectionResetError):
            await ws.send_str(finished(task_id, attempt["execution_key"]))
        codes: dict[str, int] = {}
        took: dict[str, float] = {}

        async def watch(name: str, sock: aiohttp.ClientWebSocketResponse) -> None:
            while True:
                msg = await sock.receive(timeout=FRAME_TIMEOUT_S)
                if msg.type == WSMsgType.CLOSE:
                    took[name] = time.time() - revoked_at
                    codes[name] = int(msg.data)
                    return
                frame = json.loads(msg.data)
                assert frame.get("type") != "accepted", frame
                if frame.get("type") == "refused":
                    assert frame["code"] == 401, frame

        await asyncio.gather(watch("gateway", ws), watch("feed", feed))
    assert codes == {"gateway": CLOSE_UNAUTHORIZED, "feed": CLOSE_UNAUTHORIZED}
    print(f"revocation closed: gateway {took['gateway']:.3f} s, feed {took['feed']:.3f} s")
    task = await api.task(task_id)
    assert task["state"] == "running", task  # its finished was not accepted
    resp = await api.client.get("/tasks", headers=headers(token))
    assert resp.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        async with api.client.ws_connect(CONNECT, headers=headers(token)):
            pass
    assert caught.value.status == 401


async def test_a_claim_or_report_in_flight_is_refused_once_revoked_elsewhere(
    api: Api, settings: Settings
) -> None:
    """The store checks the token inside the write's transaction: a socket or
    request let in before the revocation (by another process, on its own
    connection to the database) applies nothing after it."""
    from banyan.errors import Unauthorized
    from banyan.resources import Resources
    from banyan.tokens import Caller, Role
    from server.keys import STORE
    from server.stores.sqlite.store import SqliteStore

    store = api.client.app[STORE]
    await api.submit(command="sleep 100", state="available")
    await api.submit(command="sleep 100", state="available")
    (attempt,) = await store.claim(
        worker="worker-1", token="worker-1", free=Resources(cores=1), queues=["default"], limit=1
    )
    other = SqliteStore(settings.db)  # another process's view of the same file
    await other.open()
    try:
        await other.revoke_token("worker-1")
    finally:
        await other.close()
    caller = Caller("worker-1", Role.WORKER)
    with pytest.raises(Unauthorized):
        await store.finish(
            attempt["task"],
            attempt["execution_key"],
            exit_status="success",
            exit_code=0,
            usage=None,
            caller=caller,
            worker="worker-1",
        )
    with pytest.raises(Unauthorized):
        await store.claim(
            worker="worker-1",
            token="worker-1",
            free=Resources(cores=1),
            queues=["default"],
            limit=1,
        )
    assert (await api.task(attempt["task"]))["state"] == "running"
