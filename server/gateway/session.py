"""What the worker gateway knows of one connected worker: its name, socket,
token, queues, the attempts it holds (and which of them are prefetched), its
lifetime, and one send lock so that frames never interleave.

A worker that speaks ``banyan.protocol.BATCH_PROTOCOL`` gets the frames the
gateway has ready for it in one turn of the event loop as one message: each
``send`` adds to an outbox, and the first one of a turn starts the task that
sends the outbox (it runs once the turn's other callbacks ran)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from banyan import protocol as p
from banyan.resources import Resources
from banyan.tokens import Caller


@dataclass
class Session:
    """One connected worker, as the gateway knows it."""

    name: str
    ws: web.WebSocketResponse
    caller: Caller
    queues: list[str]
    held: dict[str, str] = field(default_factory=dict)  # task id -> execution key
    queued: set[str] = field(default_factory=set)  # of held: prefetched, not started yet
    draining: bool = False
    capacity: Resources | None = None
    # Its last claim found nothing for a free slot: prefetch is granted to no
    # other worker of its queues meanwhile (it should start the next tasks).
    idle: bool = False
    # What it said was free at its last claim (None before the first one).
    free: Resources | None = None
    # Woken by name for new tasks (not with everyone): if its next claim
    # finds nothing it can start, the other workers of its queues are woken.
    woken: bool = False
    # A shared store (several servers): a claim of this worker is under way;
    # ``missed``: meanwhile another server's worker claimed from its queues.
    # A claim on PostgreSQL passes over the tasks another server's claim
    # holds until that one commits, so an empty answer then may only mean
    # "held elsewhere": the worker is told to claim again (``work_available``)
    # when another server's claim is seen, during its claim or after.
    claiming: bool = False
    missed: bool = False
    revoked: bool = False  # its token was revoked: nothing more it sends is applied
    # Declared lost (silent past worker_timeout_s): nothing more it sends is
    # applied or answered, so no late ack can extend the worker's lease.
    lost: bool = False
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    inflight: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(64))
    pending: set[asyncio.Task[None]] = field(default_factory=set)
    # Monotonic time the worker's lifetime ends (``banyan-worker --time-limit``).
    deadline: float | None = None
    # Awaited before every frame sent (a shared store: only while this server
    # is on record as alive, ``gateway.cluster``); None: send at once.
    gate: Callable[[], Awaitable[None]] | None = None
    # It reads ``batch`` frames: sends are gathered per loop turn (``outbox``),
    # and sent by a task started with ``spawn`` (the gateway's side tasks).
    batching: bool = False
    outbox: list[Any] = field(default_factory=list)
    spawn: Callable[[Coroutine[Any, Any, None]], object] | None = None

    def remaining_s(self, now: float | None = None) -> float | None:
        """The worker's remaining lifetime, as it last told it; None: no lifetime."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - (time.monotonic() if now is None else now))

    async def send(self, frame: Any) -> None:
        if self.gate is not None:
            await self.gate()
        if self.ws.closed:
            return
        if self.batching:
            self.outbox.append(frame)
            if self.send_lock.locked() or self.spawn is None:
                # A send is waiting for the socket to drain: wait with it, as
                # an unbatched send would (the outbox must not grow unbounded).
                await self.flush()
            elif len(self.outbox) == 1:  # the first of this turn: send them all after it
                self.spawn(self.flush())
            return
        async with self.send_lock:
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await self.ws.send_str(p.encode(frame))

    async def flush(self) -> None:
        """Send what the outbox holds (``batching``), in order."""
        async with self.send_lock:
            frames, self.outbox = self.outbox, []
            if not frames or self.ws.closed:
                return
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                for message in p.pack(frames):
                    await self.ws.send_str(message)


class Sessions(dict[str, Session]):
    """The connected workers by name, counting their comings and goings
    (``changes``), so that a view of the workers built from them can tell
    whether it is still current."""

    changes = 0

    def __setitem__(self, name: str, session: Session) -> None:
        self.changes += 1
        super().__setitem__(name, session)

    def __delitem__(self, name: str) -> None:
        self.changes += 1
        super().__delitem__(name)
