"""``batch`` frames on the worker gateway (``protocol.BATCH_PROTOCOL``),
spoken directly over a websocket of the in-process test server: several
reports and a claim in one message are applied in order, each answered as if
it came alone; a worker that does not offer the subprotocol never receives a
batch; a malformed batch closes the connection with 4400 and changes nothing.
The real worker's side is in ``test_batch_worker``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from banyan import protocol as p
from banyan.dates import parse_date
from tests.conftest import Api
from tests.e2e.test_gateway import (
    CONNECT,
    FRAME_TIMEOUT_S,
    _closed_with_bad_frame,
    _store_intact,
    auth,
    hello,
    submit_many,
    total,
)

pytestmark = pytest.mark.slow

KEY = "k" * 20


@asynccontextmanager
async def connected(
    api: Api, name: str, *, batching: bool = True
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A gateway connection past hello/welcome, offering the batch subprotocol or not."""
    protocols = (p.BATCH_PROTOCOL, p.LEASE_PROTOCOL) if batching else ()
    async with api.client.ws_connect(CONNECT, headers=auth(api), protocols=protocols) as ws:
        assert ws.protocol == (p.BATCH_PROTOCOL if batching else None)
        await ws.send_str(json.dumps(hello(name)))
        msg = await ws.receive(timeout=FRAME_TIMEOUT_S)
        assert json.loads(msg.data)["type"] == "welcome", msg  # always alone
        yield ws


async def frames_until(
    ws: aiohttp.ClientWebSocketResponse, count: int, *, kinds: set[str], messages: list[str]
) -> list[dict[str, Any]]:
    """The next ``count`` frames of the given ``kinds``, unpacking batches;
    the type of each message read is appended to ``messages``."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        msg = await ws.receive(timeout=FRAME_TIMEOUT_S)
        assert msg.type == WSMsgType.TEXT, (msg, ws.close_code)
        frame = json.loads(msg.data)
        messages.append(frame["type"])
        inner = frame["frames"] if frame["type"] == "batch" else [frame]
        found += [f for f in inner if f["type"] in kinds]
    return found


def finished(task: str, key: str) -> dict[str, Any]:
    return {"type": "finished", "task": task, "execution_key": key, "exit_status": "success"}


def batch(*frames: dict[str, Any]) -> str:
    return json.dumps({"type": "batch", "frames": list(frames)})


async def test_reports_and_a_claim_in_one_batch(api: Api) -> None:
    ids = await submit_many(api, 3)
    messages: list[str] = []
    async with connected(api, "w1") as ws:
        await ws.send_str(json.dumps({"type": "claim", "free": {"cores": 64}, "limit": 3}))
        (assigned,) = await frames_until(ws, 1, kinds={"assigned"}, messages=messages)
        keys = {a["task"]: a["execution_key"] for a in assigned["attempts"]}
        assert sorted(keys) == sorted(ids)
        more = await submit_many(api, 1)
        claim = {"type": "claim", "free": {"cores": 64}, "limit": 1}
        await ws.send_str(batch(*(finished(t, k) for t, k in keys.items()), claim))
        answers = await frames_until(
            ws, 4, kinds={"accepted", "refused", "assigned"}, messages=messages
        )
    # One answer per report, as for single frames, and the claim's.
    accepted = [a for a in answers if a["type"] == "accepted"]
    assert sorted((a["task"], a["execution_key"]) for a in accepted) == sorted(keys.items())
    (refill,) = [a for a in answers if a["type"] == "assigned"]
    assert [a["task"] for a in refill["attempts"]] == more
    for task_id in ids:
        done = await api.task(task_id)
        assert (done["state"], done["execution"]["exit_status"]) == ("terminated", "success")
    # Answers the server had ready together went out together.
    assert "batch" in messages, messages


async def test_started_is_applied_before_the_finished_after_it(api: Api) -> None:
    """A queued attempt's ``started`` and ``finished`` in one batch: the
    attempt starts (at the time reported), then ends."""
    (task_id,) = await submit_many(api, 1)
    messages: list[str] = []
    async with connected(api, "w1") as ws:
        # No core free: the attempt is handed out queued (prefetch).
        claim = {"type": "claim", "free": {"cores": 0}, "limit": 1, "prefetch": 1}
        await ws.send_str(json.dumps(claim))
        (assigned,) = await frames_until(ws, 1, kinds={"assigned"}, messages=messages)
        (attempt,) = assigned["attempts"]
        assert attempt["queued"] is True
        key = attempt["execution_key"]
        started = {"type": "started", "task": task_id, "execution_key": key, "time": 1.7e9}
        await ws.send_str(batch(started, finished(task_id, key)))
        (answer,) = await frames_until(ws, 1, kinds={"accepted", "refused"}, messages=messages)
        assert answer["type"] == "accepted", answer
    done = await api.task(task_id)
    assert done["state"] == "terminated"
    assert done["execution"]["exit_status"] == "success"
    assert parse_date(done["execution"]["time_started"]) == 1.7e9


async def test_a_worker_without_the_subprotocol_gets_single_frames(api: Api) -> None:
    """A worker of the previous version: the server still reads a batch, but
    answers it frame by frame."""
    ids = await submit_many(api, 3)
    messages: list[str] = []
    async with connected(api, "old", batching=False) as ws:
        await ws.send_str(json.dumps({"type": "claim", "free": {"cores": 64}, "limit": 3}))
        (assigned,) = await frames_until(ws, 1, kinds={"assigned"}, messages=messages)
        keys = {a["task"]: a["execution_key"] for a in assigned["attempts"]}
        for task_id, key in keys.items():  # single frames, as that version sends them
            await ws.send_str(json.dumps(finished(task_id, key)))
        answers = await frames_until(ws, 3, kinds={"accepted"}, messages=messages)
    assert sorted(a["task"] for a in answers) == sorted(ids)
    assert "batch" not in messages, messages


async def test_a_report_refused_in_a_batch_leaves_the_others_applied(api: Api) -> None:
    ids = await submit_many(api, 2)
    messages: list[str] = []
    async with connected(api, "w1") as ws:
        await ws.send_str(json.dumps({"type": "claim", "free": {"cores": 64}, "limit": 2}))
        (assigned,) = await frames_until(ws, 1, kinds={"assigned"}, messages=messages)
        first, second = assigned["attempts"]
        stale = "not-the-key-" + "x" * 16
        await ws.send_str(
            batch(finished(first["task"], stale), finished(second["task"], second["execution_key"]))
        )
        answers = await frames_until(ws, 2, kinds={"accepted", "refused"}, messages=messages)
    by_task = {a["task"]: a for a in answers}
    assert by_task[first["task"]]["type"] == "refused"
    assert by_task[first["task"]]["code"] == 409
    assert by_task[second["task"]]["type"] == "accepted"
    assert (await api.task(first["task"]))["state"] == "running"
    assert (await api.task(second["task"]))["state"] == "terminated"
    assert sorted(ids) == sorted(by_task)


HEARTBEAT = {"type": "heartbeat"}
BAD_BATCHES = {
    "empty": batch(),
    "frames-not-a-list": json.dumps({"type": "batch", "frames": HEARTBEAT}),
    "no-frames": json.dumps({"type": "batch"}),
    "extra-field": json.dumps({"type": "batch", "frames": [HEARTBEAT], "sudo": True}),
    "hello-inside": batch(HEARTBEAT, hello("w")),
    "bye-inside": batch(HEARTBEAT, {"type": "bye"}),
    "batch-inside": batch(HEARTBEAT, {"type": "batch", "frames": [HEARTBEAT]}),
    "unknown-type-inside": batch(HEARTBEAT, {"type": "launch_missiles"}),
    "bad-report-inside": batch(
        HEARTBEAT,
        {"type": "finished", "task": "../etc", "execution_key": KEY, "exit_status": "success"},
    ),
    "too-many": batch(*[HEARTBEAT] * (p.MAX_BATCH + 1)),
    "not-objects": json.dumps({"type": "batch", "frames": [1, "two", None]}),
}


@pytest.mark.parametrize("frame", BAD_BATCHES.values(), ids=BAD_BATCHES.keys())
async def test_a_malformed_batch_closes_with_4400(api: Api, frame: str) -> None:
    ids = await submit_many(api, 2)
    before = await total(api)
    async with connected(api, "sloppy") as ws:
        await ws.send_str(frame)
        await _closed_with_bad_frame(ws)
        assert ws.close_code == p.CLOSE_BAD_FRAME
    await _store_intact(api, ids, before)


async def test_a_malformed_batch_is_refused_as_a_whole(api: Api) -> None:
    """A batch with one bad frame applies none of it: a valid ``finished``
    before the bad frame is not applied either."""
    (task_id,) = await submit_many(api, 1)
    messages: list[str] = []
    async with connected(api, "w1") as ws:
        await ws.send_str(json.dumps({"type": "claim", "free": {"cores": 64}, "limit": 1}))
        (assigned,) = await frames_until(ws, 1, kinds={"assigned"}, messages=messages)
        (attempt,) = assigned["attempts"]
        await ws.send_str(batch(finished(task_id, attempt["execution_key"]), {"type": "nope"}))
        msg = await ws.receive(timeout=FRAME_TIMEOUT_S)
        while msg.type == WSMsgType.TEXT:
            msg = await ws.receive(timeout=FRAME_TIMEOUT_S)
        assert ws.close_code == p.CLOSE_BAD_FRAME
        assert "frames.1" in str(msg.extra), msg  # the close reason says where
    assert (await api.task(task_id))["state"] == "running"


def test_pack_joins_frames_and_keeps_lone_and_large_ones_alone() -> None:
    heartbeat = p.Heartbeat()
    assert p.pack([heartbeat]) == [p.encode(heartbeat)]  # a lone frame is itself
    (joined,) = p.pack([heartbeat] * 3)
    decoded = p.decode_worker_frame(joined)
    assert isinstance(decoded, p.WorkerBatch) and len(decoded.frames) == 3
    # hello, welcome and bye travel alone, in their place.
    messages = p.pack([heartbeat, heartbeat, p.Bye(), heartbeat])
    assert [json.loads(m)["type"] for m in messages] == ["batch", "bye", "heartbeat"]
    # At most MAX_BATCH frames in one message.
    sizes = [len(json.loads(m)["frames"]) for m in p.pack([heartbeat] * (p.MAX_BATCH + 2))]
    assert sizes == [p.MAX_BATCH, 2]
    # A frame too long to share a message goes alone; nothing exceeds the limit.
    big = p.Output(task="a" * 24, execution_key=KEY, stream="stdout", data="é" * p.MAX_BATCH_CHARS)
    messages = p.pack([heartbeat, big, heartbeat, heartbeat])
    assert [json.loads(m)["type"] for m in messages] == ["heartbeat", "output", "batch"]
    for message in p.pack([heartbeat] + [big.model_copy(update={"data": "é" * 300_000})] * 8):
        assert len(message.encode()) <= p.MAX_FRAME_BYTES
        p.decode_worker_frame(message)
