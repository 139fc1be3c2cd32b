"""The event feed: replay with ``since``, then live, with no gap and no
duplicate; filters; resync; a slow subscriber is dropped, others go on."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from banyan.errors import InsufficientStorage
from banyan.tokens import Role, basic_auth_header
from server.app import create_app
from server.feed import CLOSE_TOO_SLOW, text_frame
from server.feedring import Frame, Ring, entry_bytes
from server.keys import FEED, STORE
from server.settings import Settings
from tests.conftest import Api


async def connect(api: Api, **params: str) -> Any:
    headers = {"Authorization": basic_auth_header(api.tokens["alice"])}
    return await api.client.ws_connect("/events", headers=headers, params=params)


async def frames(ws: Any, until: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while not until(got):
        msg = await asyncio.wait_for(ws.receive(), timeout=10)
        assert msg.type == WSMsgType.TEXT, msg
        got.append(json.loads(msg.data))
    return got


async def test_since_replays_then_follows_live(api: Api) -> None:
    first = await api.submit(command="a")
    ws = await connect(api, since="0")
    hello = (await frames(ws, lambda g: len(g) == 1))[0]
    assert hello["type"] == "feed.hello" and hello["version"] == 1
    replay = await frames(ws, lambda g: any(f["data"].get("_id") == first for f in g))
    second = await api.submit(command="b")
    live = await frames(ws, lambda g: any(f["data"].get("_id") == second for f in g))
    seqs = [f["seq"] for f in replay + live]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gap, no duplicate
    assert replay[0]["type"] == "task.created" and "time" in replay[0]
    await ws.close()


async def test_resume_after_a_disconnect_misses_nothing(api: Api) -> None:
    ws = await connect(api)
    await frames(ws, lambda g: len(g) == 1)
    a = await api.submit(command="a", state="available")
    got = await frames(ws, lambda g: any(f["data"].get("_id") == a for f in g))
    last = got[-1]["seq"]
    await ws.close()
    missed = [await api.submit(command=f"m{i}") for i in range(5)]
    ws = await connect(api, since=str(last))
    await frames(ws, lambda g: len(g) == 1)
    resumed = await frames(ws, lambda g: sum(f["type"] == "task.created" for f in g) == 5)
    assert [f["data"]["_id"] for f in resumed] == missed
    assert resumed[0]["seq"] == last + 1
    await ws.close()


async def test_filters(api: Api) -> None:
    ws = await connect(api, where=json.dumps({"queue": "gpu"}), types="task.created")
    await frames(ws, lambda g: len(g) == 1)
    await api.submit(command="cpu", queue="cpu")
    wanted = await api.submit(command="gpu", queue="gpu", state="available")
    await api.patch(f"/tasks/{wanted}", {"state": "cancelled"})
    marker = await api.submit(command="last", queue="gpu")
    got = await frames(ws, lambda g: any(f["data"]["_id"] == marker for f in g))
    assert [f["data"]["_id"] for f in got] == [wanted, marker]
    assert {f["type"] for f in got} == {"task.created"}
    await ws.close()


async def test_bad_parameters_are_400(api: Api) -> None:
    for params in ({"since": "x"}, {"since": "-1"}, {"where": "{bad"}, {"types": "task.nope"}):
        resp = await api.get("/events", params=params)
        assert resp.status == 400, (params, resp)
        assert resp.body["_status"] == "ERR"
    assert (await api.get("/events", as_=None)).status == 401


async def test_resync_when_since_is_too_old(api: Api) -> None:
    for i in range(3):
        await api.submit(command=f"t{i}")
    await api.client.app[STORE].prune_events(keep=1)
    ws = await connect(api, since="0")
    got = await frames(ws, lambda g: len(g) == 2)
    assert got[1]["type"] == "feed.resync" and got[1]["oldest_seq"] > 1
    await ws.close()


async def test_resync_when_since_is_ahead_of_the_feed(api: Api) -> None:
    """A subscriber that saw seqs a restored (or replaced) database never
    reached is told to refetch, then gets the new events, none skipped."""
    first = await api.submit(command="t0")
    ws = await connect(api, since="1000")
    got = await frames(ws, lambda g: len(g) == 2)
    assert got[0]["type"] == "feed.hello" and got[0]["seq"] < 1000
    assert got[1]["type"] == "feed.resync"
    later = await api.submit(command="t1")
    created = await frames(ws, lambda g: any(f.get("type") == "task.created" for f in g))
    assert [f["data"]["_id"] for f in created if f["type"] == "task.created"] == [later]
    assert first != later
    await ws.close()


async def test_client_events_follow_a_feed_that_went_back(api: Api) -> None:
    """banyan.client: resuming with a since beyond the feed's head yields the
    resync and then every new event (it once dropped them as already seen)."""
    from banyan.client import Client
    from banyan.client.discovery import Connection

    server = str(api.client.make_url("")).rstrip("/")
    token = api.tokens["admin"]
    async with Client(Connection(server=server, token=token)) as client:
        stream = client.events(since=1000, reconnect=False)
        first = await anext(stream)
        assert first["type"] == "feed.resync"
        wanted = await api.submit(command="after the restore")
        async for frame in stream:
            if frame.get("type") == "task.created":
                assert frame["data"]["_id"] == wanted
                break
        await stream.aclose()


async def test_client_typed_events_decode_the_union(api: Api) -> None:
    """banyan.client: ``typed_events`` yields the models of ``banyan.events``
    (a resync as ``FeedResync``), from the same wire frames."""
    from banyan.client import Client
    from banyan.client.discovery import Connection
    from banyan.events import FeedResync, TaskCreated, TaskState

    server = str(api.client.make_url("")).rstrip("/")
    async with Client(Connection(server=server, token=api.tokens["admin"])) as client:
        stream = client.typed_events(since=1000, reconnect=False)
        assert isinstance(await anext(stream), FeedResync)
        wanted = await api.submit(command="typed", name="typed")
        await api.patch(f"/tasks/{wanted}", {"state": "cancelled"})
        seen: list[Any] = []
        async for event in stream:
            seen.append(event)
            if isinstance(event, TaskState):
                break
        await stream.aclose()  # type: ignore[attr-defined]
    created, changed = seen
    assert isinstance(created, TaskCreated) and created.seq is not None
    assert (created.data.id, created.data.name) == (wanted, "typed")
    assert isinstance(changed, TaskState)
    assert (changed.data.id, changed.data.state, changed.data.previous) == (
        wanted,
        "cancelled",
        "inactive",
    )


async def test_slow_subscriber_is_dropped_others_keep_receiving(
    aiohttp_client: Callable[..., Any], settings: Settings
) -> None:
    send_timeout_s = 0.2
    app: web.Application = create_app(
        settings.model_copy(update={"event_send_timeout_s": send_timeout_s})
    )
    client: TestClient = await aiohttp_client(app)
    token = await app[STORE].create_token("p", Role.PROVIDER)
    headers = {"Authorization": basic_auth_header(token)}
    slow = await client.ws_connect("/events", headers=headers, max_msg_size=0)
    fast = await client.ws_connect("/events", headers=headers)
    await slow.receive()
    await fast.receive()
    # Pause the slow reader's transport so its socket buffers fill up.
    slow._response.connection.transport.pause_reading()
    body = [{"command": f"c{i}", "name": "x" * 250} for i in range(3000)]
    feed = app[FEED]

    def dropped() -> bool:  # the server is closing the slow one
        return len(feed.sockets) < 2 or any(ws.closed for ws in feed.sockets)

    # Loopback sockets may buffer tens of MB (net.ipv4.tcp_rmem), so post until
    # the server has dropped the stalled subscriber (bounded: ~50 MB of frames).
    for _ in range(40):
        async with client.post("/tasks", json=body, headers=headers) as resp:
            assert resp.status == 201
        for _ in range(3000):  # the fast one gets every event while the slow one stalls
            msg = await asyncio.wait_for(fast.receive(), timeout=20)
            assert msg.type == WSMsgType.TEXT
        # A send blocked for event_send_timeout_s drops the subscriber: wait that
        # long (and a little more) for it, else post more to fill the buffers.
        deadline = asyncio.get_running_loop().time() + send_timeout_s * 1.5
        while not dropped() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        if dropped():
            break
    # It did not read within the grace after CLOSE_TOO_SLOW was queued behind
    # its unread data: the connection was aborted, not left open waiting for
    # a close handshake it would never answer.
    slow._response.connection.transport.resume_reading()
    while True:  # it reads what reached it before the abort, then the end
        msg = await asyncio.wait_for(slow.receive(), timeout=20)
        if msg.type != WSMsgType.TEXT:
            break
    assert msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR) or msg.data == CLOSE_TOO_SLOW, msg
    await fast.close()


async def test_one_commit_of_many_events_arrives_as_one_message_each_in_order(api: Api) -> None:
    # 2,500 events in one commit: written to the socket in batches (up to
    # 1,000 per read of the ring), still one text message per event.
    ws = await connect(api, types="task.created")
    await frames(ws, lambda g: len(g) == 1)
    resp = await api.post("/tasks", [{"command": f"c{i}", "name": f"n{i}"} for i in range(2500)])
    assert resp.status == 201
    got = await frames(ws, lambda g: len(g) == 2500)
    assert [f["data"]["name"] for f in got] == [f"n{i}" for i in range(2500)]
    seqs = [f["seq"] for f in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 2500
    await ws.close()


async def test_frames_of_both_short_length_forms_decode(api: Api) -> None:
    # A frame under 126 bytes has a 1-byte length, up to 65,535 a 2-byte one;
    # "\U0001f333" is escaped to 12 bytes of JSON, so 1,000 of them make ~12 KB.
    ws = await connect(api, types="task.created")
    hello = await frames(ws, lambda g: len(g) == 1)
    assert len(json.dumps(hello[0], separators=(",", ":"))) < 126
    names = ["", "x" * 100, "x" * 126, "\U0001f333" * 1000]
    for name in names:
        await api.submit(command="true", name=name)
    got = await frames(ws, lambda g: len(g) == len(names))
    assert [f["data"]["name"] for f in got] == names
    await ws.close()


def test_text_frame_headers() -> None:
    """RFC 6455 5.2: FIN + text opcode, no mask, 7-bit / 16-bit / 64-bit length."""
    for size, header in (
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ):
        frame = text_frame("a" * size)
        assert frame[: len(header)] == header and len(frame) == len(header) + size, size


async def test_the_feed_never_negotiates_compression(api: Api) -> None:
    headers = {"Authorization": basic_auth_header(api.tokens["alice"])}
    ws = await api.client.ws_connect("/events", headers=headers, compress=15)
    assert ws.compress == 0
    await frames(ws, lambda g: len(g) == 1)
    task = await api.submit(command="true")
    got = await frames(ws, lambda g: any(f["data"].get("_id") == task for f in g))
    assert got[-1]["type"] == "task.created"
    await ws.close()


async def test_pruning_goes_on_after_a_failed_round(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk once made the pruning loop stop for good."""
    store = api.client.app[STORE]
    real = store.prune_events
    calls: list[str] = []

    async def flaky(*, keep: int) -> int:
        calls.append("called")
        if len(calls) == 1:
            raise InsufficientStorage("the server's disk is full; the write was not applied")
        return await real(keep=keep)

    monkeypatch.setattr(store, "prune_events", flaky)
    for i in range(3):
        await api.submit(command=f"t{i}")
    pruner = asyncio.create_task(api.client.app[FEED].prune(keep=1, period_s=0.01))
    try:
        for _ in range(500):
            if len(calls) >= 2:
                break
            await asyncio.sleep(0.01)
    finally:
        pruner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pruner
    assert len(calls) >= 2
    assert await store.oldest_seq() > 1  # the second round did prune


def test_ring_is_bounded_in_bytes_and_in_events() -> None:
    ring = Ring(max_events=1000, max_bytes=200_000)
    big = text_frame("x" * 4000)
    for seq in range(1, 201):
        ring.add(seq, "task.created", big)
    assert ring.bytes <= 200_000 and len(ring) == 200_000 // entry_bytes(Frame(0, "", big))
    assert ring.bytes == len(ring) * entry_bytes(Frame(0, "", big))
    assert ring.after(200, limit=10) == []
    assert ring.after(1, limit=10) is None  # evicted: the store serves it
    oldest = 201 - len(ring)
    assert [f.seq for f in ring.after(oldest - 1, limit=1000) or []] == list(range(oldest, 201))
    small = text_frame("y")
    for seq in range(201, 2201):
        ring.add(seq, "task.state", small)
    assert len(ring) == 1000  # now the event bound holds
    ring.skip(2300)
    assert (len(ring), ring.bytes) == (0, 0)
    assert ring.after(2299, limit=10) is None and ring.after(2300, limit=10) == []


async def test_large_events_beyond_the_byte_bound_are_served_from_the_store(
    aiohttp_client: Callable[..., Any], settings: Settings
) -> None:
    # 1 MiB of ring, ~5.5 MB of events with 1,024-character (4 KB) names: the
    # ring keeps what fits and a subscriber from the start gets everything, in
    # order, whether it comes from the ring or the table.
    app: web.Application = create_app(
        settings.model_copy(update={"event_buffer_bytes": 1024 * 1024})
    )
    client: TestClient = await aiohttp_client(app)
    token = await app[STORE].create_token("p", Role.PROVIDER)
    headers = {"Authorization": basic_auth_header(token)}
    live = await client.ws_connect("/events", headers=headers, params={"types": "task.created"})
    await live.receive()
    name = "\N{MUSICAL SYMBOL G CLEF}" * 1024
    for _ in range(3):
        body = json.dumps([{"command": "x", "name": name}] * 400, ensure_ascii=False)
        async with client.post(
            "/tasks",
            data=io.BytesIO(body.encode()),
            headers=headers | {"Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 201
    ring = app[FEED]._ring
    got_live = await frames(live, lambda g: len(g) == 1200)
    assert ring.bytes <= 1024 * 1024 and 0 < len(ring) < 1200
    assert all(len(f["data"]["name"]) == 1024 for f in got_live)
    replay = await client.ws_connect(
        "/events", headers=headers, params={"since": "0", "types": "task.created"}
    )
    got = await frames(replay, lambda g: len(g) == 1201)
    assert [f["seq"] for f in got[1:]] == [f["seq"] for f in got_live]
    filtered = await client.ws_connect(
        "/events",
        headers=headers,
        params={"since": "0", "where": json.dumps({"name": {"$ne": "x"}})},
    )
    got = await frames(filtered, lambda g: len(g) == 1201)
    assert all(f["data"]["name"] == name for f in got[1:])
    for ws in (live, replay, filtered):
        await ws.close()
