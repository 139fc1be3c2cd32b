"""The event feed (``GET /events``, websocket): every committed change, in
``seq`` order, to any number of subscribers.

Subscribers pull: each keeps a cursor (the last ``seq`` it sent) and reads
from a ring of recent events in memory (``server.feedring``: encoded frames,
bounded in events and in bytes), falling back to the events table when it has
fallen behind the ring (a replay with ``?since=`` is the same path). So
replay and live are one loop with no gap and no duplicate, memory does not
grow with the number of slow subscribers, and nobody waits for anybody: a
subscriber whose socket takes no data for ``event_send_timeout_s`` is closed
with ``CLOSE_TOO_SLOW`` and may resume with ``?since=``. A subscriber whose
token is revoked is closed with ``CLOSE_UNAUTHORIZED`` (``server.revocation``).

Fan-out is cheap per subscriber: each event is encoded once, as a complete
websocket frame, for everybody; a subscriber gets all the frames it is due
from one commit in one socket write (not one write, and one wakeup, per
event), and waits only while its socket holds more unsent bytes than the
transport's high-water mark (asyncio's flow control, as aiohttp's own
sends). The feed never compresses (one encoding cannot serve per-connection
deflate contexts); frames are still one JSON object per text message.

Frames (version 1), one JSON object per text message:

- ``{"type": "feed.hello", "version": 1, "seq": <last seq now>, "oldest_seq": n}`` first;
- then events ``{"seq": n, "time": "<date_format>", "timestamp": <epoch s>,
  "type": "task.created" | "task.state" | "task.progress" | "task.usage" |
  "worker.joined" | "worker.heartbeat" | "worker.lost" | "worker.left",
  "data": {...}}`` (``banyan.events`` has one model per type);
- ``{"type": "feed.resync", "oldest_seq": n}`` when ``since`` is older than
  what is retained, or ahead of the last seq (the database was restored from
  a backup or replaced): refetch a snapshot; the events after it follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from collections.abc import Collection

from aiohttp import WSMsgType, web

from banyan.dates import format_date
from banyan.errors import BadRequest, BanyanError
from banyan.events import EVENT_FIELDS, EVENT_TYPES
from banyan.protocol import CLOSE_UNAUTHORIZED  # the token was revoked (4401)
from banyan.query import Node, matches, parse_where
from server.feedring import Frame, Ring
from server.hub import Event, EventHub
from server.stores.base import Store

log = logging.getLogger(__name__)
FEED_VERSION = 1
CLOSE_TOO_SLOW = 4429
CLOSE_SHUTDOWN = 1001
CLOSE_INTERNAL = 1011
_READ_BATCH = 1000
# After CLOSE_TOO_SLOW is queued, how long the socket may take to send it
# before the connection is aborted (a subscriber that does not read would
# otherwise hold the socket and its kernel buffers for as long as it likes).
DROP_GRACE_S = 1.0
# Shutdown closes every subscriber at once, each bounded by this.
SHUTDOWN_CLOSE_S = 0.5
_WS_TEXT_FIN = 0x81  # FIN + opcode 1 (text); a server never masks (RFC 6455 5.1)
# Subscribers only listen: a larger frame from one closes its socket (1009).
SUBSCRIBER_MAX_FRAME_BYTES = 64 * 1024


class Feed:
    def __init__(
        self,
        store: Store,
        hub: EventHub,
        *,
        date_format: str,
        buffer: int = 100_000,
        buffer_bytes: int = 64 * 1024 * 1024,
        send_timeout_s: float = 10.0,
    ) -> None:
        self._store = store
        self._hub = hub
        self._date_format = date_format
        self._send_timeout_s = send_timeout_s
        self._ring = Ring(max_events=buffer, max_bytes=buffer_bytes)
        self._new = asyncio.Event()
        self.sockets: set[web.WebSocketResponse] = set()
        self._dropping: set[web.WebSocketResponse] = set()  # being closed by their listener
        self._tokens: dict[web.WebSocketResponse, str] = {}  # each subscriber's token name
        hub.subscribe(self._on_events)

    def _on_events(self, events: list[Event]) -> None:
        if not self.sockets:
            # Nobody to send them to: encoding them would cost time for a
            # ring that a later subscriber's cursor may never reach (the store
            # serves it those).
            self._ring.skip(events[-1]["seq"])
        else:
            for event in events:
                self._ring.add(event["seq"], event["type"], self._encode(event))
        self._new.set()
        self._new = asyncio.Event()  # the next waiters wait for the next batch

    async def prune(self, *, keep: int, period_s: float = 60.0) -> None:
        """Keep the newest ``keep`` events in the table (a background loop)."""
        while True:
            try:
                await self._store.prune_events(keep=keep)
            except BanyanError as exc:  # e.g. the disk is full: try again next period
                log.warning("pruning old events failed: %s", exc)
            await asyncio.sleep(period_s)

    async def close_all(self) -> None:
        """Close every subscriber (server shutdown), all at once and bounded:
        one whose socket takes nothing is aborted, not waited for."""

        async def close(ws: web.WebSocketResponse) -> None:
            with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
                await asyncio.wait_for(
                    ws.close(code=CLOSE_SHUTDOWN, message=b"server shutting down"),
                    timeout=SHUTDOWN_CLOSE_S,
                )

        await asyncio.gather(*(close(ws) for ws in list(self.sockets)))

    def _encode(self, event: Event) -> bytes:
        """The event's websocket frame, encoded once however many subscribers send it."""
        text = json.dumps(
            {
                "seq": event["seq"],
                "time": format_date(event["time"], self._date_format),
                "timestamp": event["time"],
                "type": event["type"],
                "data": event["data"],
            },
            separators=(",", ":"),
        )
        return text_frame(text)

    async def _next_frames(self, seq: int) -> list[Frame]:
        """Frames after ``seq``: from the ring, else (fallen behind it) from the store."""
        frames = self._ring.after(seq, limit=_READ_BATCH)
        if frames is not None:
            return frames
        events = await self._store.events_since(seq, limit=_READ_BATCH)
        return [Frame(e["seq"], e["type"], self._encode(e)) for e in events]

    def tokens_in_use(self) -> set[str]:
        return set(self._tokens.values())

    async def close_revoked(self, tokens: Collection[str]) -> int:
        """Close the subscribers whose token was revoked (``CLOSE_UNAUTHORIZED``),
        each bounded like a shutdown close."""
        gone = [ws for ws, token in self._tokens.items() if token in tokens]

        async def close(ws: web.WebSocketResponse) -> None:
            self._tokens.pop(ws, None)
            with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
                await asyncio.wait_for(
                    ws.close(code=CLOSE_UNAUTHORIZED, message=b"token revoked"),
                    timeout=SHUTDOWN_CLOSE_S,
                )

        await asyncio.gather(*(close(ws) for ws in gone))
        return len(gone)

    async def handle(
        self, request: web.Request, since: int | None, *, token: str = ""
    ) -> web.WebSocketResponse:
        """Serve one subscriber; ``token``: the name of the token it connected
        with (its socket is closed when that token is revoked)."""
        where = parse_where(request.rel_url.query.get("where"), EVENT_FIELDS)
        types = _types(request.rel_url.query.get("types"))
        ws = web.WebSocketResponse(
            heartbeat=30, max_msg_size=SUBSCRIBER_MAX_FRAME_BYTES, compress=False
        )
        await ws.prepare(request)
        self.sockets.add(ws)
        self._tokens[ws] = token
        transport = request.transport
        assert transport is not None  # prepared: the connection is open
        listener = asyncio.create_task(self._follow(ws, transport, since, where, types))
        try:
            async for msg in ws:  # subscribers only listen; this notices a close
                if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
        finally:
            # Let a listener that is dropping its subscriber finish (it aborts
            # the connection within DROP_GRACE_S); stop any other one now: it
            # may be waiting for the next event, which could be a long way off.
            if ws not in self._dropping:
                listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(listener, timeout=DROP_GRACE_S + 5)
            self.sockets.discard(ws)
            self._tokens.pop(ws, None)
            self._dropping.discard(ws)
            if not ws.closed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ws.close(), timeout=SHUTDOWN_CLOSE_S)
        return ws

    async def _follow(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        since: int | None,
        where: Node | None,
        types: frozenset[str] | None,
    ) -> None:
        try:
            head = self._hub.last_seq
            oldest = await self._store.oldest_seq()
            hello = {
                "type": "feed.hello",
                "version": FEED_VERSION,
                "seq": head,
                "oldest_seq": oldest,
            }
            await self._write(ws, transport, [text_frame(json.dumps(hello))])
            if self._ring.head < head:
                # Only right after a start (the hub read the head from the
                # store, no batch came since): the ring holds nothing and
                # must send cursors before the head to the store.
                self._ring.skip(head)
            sent = head if since is None else min(since, head)
            # Older than what is kept, or ahead of the feed (the database was
            # restored or replaced, its seqs start over): either way the
            # subscriber's picture is stale.
            behind = since is not None and oldest > 0 and since < oldest - 1
            if behind or (since is not None and since > head):
                resync = {"type": "feed.resync", "oldest_seq": oldest}
                await self._write(ws, transport, [text_frame(json.dumps(resync))])
                sent = oldest - 1 if behind else head
            while not ws.closed:
                waiter = self._new
                batch = await self._next_frames(sent)
                if not batch:
                    await waiter.wait()
                    continue
                frames = [
                    frame.wire
                    for frame in batch
                    if (types is None or frame.type in types)
                    and (where is None or matches(where, frame.data()))
                ]
                await self._write(ws, transport, frames)
                sent = batch[-1].seq
        except TimeoutError:
            await self._drop(ws, transport)
        except (ConnectionResetError, RuntimeError):
            pass
        except Exception:  # the handshake is done: no HTTP error response can follow
            log.exception("event feed subscriber failed")
            await ws.close(code=CLOSE_INTERNAL, message=b"internal error")

    async def _drop(self, ws: web.WebSocketResponse, transport: asyncio.Transport) -> None:
        """Drop a subscriber that took no data for ``send_timeout_s``: queue
        CLOSE_TOO_SLOW behind what it has not read, close the connection once
        that is sent, and abort it when it is not sent within DROP_GRACE_S
        (it does not read: no close handshake could finish)."""
        self._dropping.add(ws)
        transport.write(close_frame(CLOSE_TOO_SLOW, b"too slow; resume with since"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DROP_GRACE_S
        while transport.get_write_buffer_size() > 0 and not transport.is_closing():
            if loop.time() >= deadline:
                log.debug("aborting a feed subscriber that does not read")
                transport.abort()
                return
            await asyncio.sleep(0.02)
        transport.close()

    async def _write(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport, frames: list[bytes]
    ) -> None:
        """Send ``frames`` in one socket write, then wait while the socket holds
        more unsent bytes than the transport's high-water mark; TimeoutError
        when it takes none of them for ``send_timeout_s``. (aiohttp's pings and
        the close frame still go through aiohttp, each one whole write, so they
        never land inside ours.)"""
        if not frames:
            return
        if ws.closed or transport.is_closing():
            raise ConnectionResetError("the subscriber is gone")
        transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
        unsent = transport.get_write_buffer_size()
        high_water = transport.get_write_buffer_limits()[1]
        if unsent <= high_water:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._send_timeout_s
        pause_s = 0.002
        while unsent > high_water:
            if transport.is_closing():
                raise ConnectionResetError("the subscriber is gone")
            if loop.time() >= deadline:
                raise TimeoutError
            await asyncio.sleep(pause_s)
            pause_s = min(pause_s * 2, 0.05)
            now_unsent = transport.get_write_buffer_size()
            if now_unsent < unsent:  # it is taking data: the timeout starts again
                deadline = loop.time() + self._send_timeout_s
            unsent = now_unsent


def text_frame(text: str) -> bytes:
    """One complete, unmasked websocket text frame (RFC 6455 5.2) carrying ``text``."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", _WS_TEXT_FIN, n)
    elif n < 65536:
        header = struct.pack("!BBH", _WS_TEXT_FIN, 126, n)
    else:
        header = struct.pack("!BBQ", _WS_TEXT_FIN, 127, n)
    return header + payload


def close_frame(code: int, reason: bytes) -> bytes:
    """One complete, unmasked websocket close frame (RFC 6455 5.5.1)."""
    payload = struct.pack("!H", code) + reason[:123]
    return struct.pack("!BB", 0x88, len(payload)) + payload


def _types(text: str | None) -> frozenset[str] | None:
    """``task.state,worker.*`` → the set of event types wanted (None = all)."""
    if text is None or not text.strip():
        return None
    wanted = {t.strip() for t in text.split(",") if t.strip()}
    families = {t.split(".")[0] + ".*" for t in EVENT_TYPES}
    unknown = sorted(wanted - EVENT_TYPES - families)
    if unknown:
        known = ", ".join(sorted(EVENT_TYPES | families))
        raise BadRequest(f"unknown event type {unknown[0]!r}; known: {known}")
    return frozenset(t for t in EVENT_TYPES if t in wanted or t.split(".")[0] + ".*" in wanted)


def parse_since(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError as exc:
        raise BadRequest(f"since must be an event seq (an integer), got {text!r}") from exc
    if value < 0:
        raise BadRequest("since must be >= 0")
    return value
