"""The worker gateway's state and everything it does on its own: start and
stop, closing the connections of revoked tokens, pushing ``work_available``
and ``cancel`` when the event hub sees tasks change, and the monitor that
declares a silent worker lost.

``work_available`` goes to as many workers of a queue as tasks became
available in it, the idle ones with the most free cores first, not to all
of them: with hundreds of idle workers, waking every one for each new task
made each single ``POST /tasks`` send hundreds of frames (and, with real
workers, start hundreds of claims for one task). A worker woken by name
whose claim then finds nothing it can start wakes the others
(``Frames._claim``), so a task that only some workers fit still reaches one.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import Counter
from collections.abc import Collection, Iterable
from typing import Any

from banyan import protocol as p
from banyan.errors import BanyanError
from banyan.states import State
from banyan.supervise import SideTasks
from server.begins import BeginTimer
from server.gateway.cluster import ClusterLiveness, monitor_period_s
from server.gateway.session import Session, Sessions
from server.hub import Event, EventHub
from server.settings import Settings
from server.stores.base import Store
from server.stores.cluster import SharedStore

log = logging.getLogger("server.gateway")


class GatewayBase:
    """The gateway's state, its lifetime, its pushes and its silence monitor."""

    def __init__(self, store: Store, settings: Settings, hub: EventHub) -> None:
        self._store = store
        self._settings = settings
        self.sessions = Sessions()
        self.last_seen: dict[str, float] = {}  # monotonic; also for workers not connected now
        self._joining: dict[str, asyncio.Lock] = {}
        self._monitor: asyncio.Task[Any] | None = None
        # Fire-and-forget sends and the silence monitor: a failure stops the server.
        self._side = SideTasks("gateway")
        self._begins = BeginTimer(store, self._push_work_to_all)
        self._begin_task: asyncio.Task[Any] | None = None
        # Several servers share the store: liveness is agreed through it (``cluster``).
        self._cluster = ClusterLiveness(store, settings) if isinstance(store, SharedStore) else None
        self._retired = False
        self._turn = itertools.count()  # rotates the wake order among equals
        hub.subscribe(self._on_events)

    # --- lifetime --------------------------------------------------------------

    async def start(self) -> None:
        if self._cluster is not None:  # on record as alive before any worker joins
            await self._cluster.round({})
        else:  # Workers connected before a restart get worker_timeout_s to come back.
            now = time.monotonic()
            for name in await self._store.connected_workers():
                self.last_seen.setdefault(name, now)
        self._monitor = self._side.spawn(self._watch_silences(), name="worker-monitor")
        self._begin_task = self._side.spawn(self._begins.run(), name="begin-timer")

    async def stop(self) -> None:
        for side in (self._monitor, self._begin_task):
            if side is not None:
                side.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await side
        for session in list(self.sessions.values()):
            await session.ws.close(code=p.CLOSE_GOING_AWAY, message=b"server shutting down")
        if self._cluster is not None and not self._retired:
            self._retired = True  # the other servers take its workers over (after their silence)
            with contextlib.suppress(BanyanError):
                await self._cluster.retire()

    # --- revocation ------------------------------------------------------------

    def tokens_in_use(self) -> set[str]:
        return {session.caller.name for session in self.sessions.values()}

    async def close_revoked(self, tokens: Collection[str]) -> int:
        """Close the connections of revoked ``tokens`` (4401); their workers
        are lost after ``worker_timeout_s`` like any that went silent."""
        revoked = [s for s in self.sessions.values() if s.caller.name in tokens]
        for session in revoked:
            session.revoked = True
            log.warning(
                "worker %s: its token %s was revoked: closing", session.name, session.caller.name
            )
        await asyncio.gather(
            *(s.ws.close(code=p.CLOSE_UNAUTHORIZED, message=b"token revoked") for s in revoked)
        )
        return len(revoked)

    # --- pushes ----------------------------------------------------------------

    def _on_events(self, events: list[Event]) -> None:
        arrived: Counter[str] = Counter()  # queue -> tasks that became available
        cancels: list[str] = []
        elsewhere: set[str] = set()  # queues another server's worker claimed from
        for event in events:
            data = event["data"]
            if event["type"] in ("task.state", "task.created"):
                if data.get("state") == State.AVAILABLE:
                    arrived[data.get("queue", "")] += 1
                elif data.get("state") == State.PENDING_CANCELLATION:
                    cancels.append(data["_id"])
                elif (
                    self._cluster is not None
                    and data.get("previous") == State.AVAILABLE
                    and data.get("state") == State.RUNNING
                    and data.get("worker") not in self.sessions
                ):
                    elsewhere.add(data.get("queue", ""))
        if not arrived and not cancels and not elsewhere:
            return
        woken: set[str] = set()
        if arrived:
            self._begins.poke()
            woken = self._to_wake(arrived)
        for session in list(self.sessions.values()):
            frames: list[Any] = []
            if session.draining:
                pass
            elif session.name in woken:
                frames.append(p.WorkAvailable())
            elif elsewhere.intersection(session.queues):
                # See ``Session.claiming``: what that claim left is free once it
                # committed (now); a worker that found nothing may find it.
                if session.claiming:
                    session.missed = True
                elif session.idle:
                    frames.append(p.WorkAvailable())
            frames += [
                p.Cancel(task=t, execution_key=session.held[t])
                for t in cancels
                if t in session.held
            ]
            for frame in frames:
                self._spawn(session.send(frame))

    def _to_wake(self, arrived: Counter[str]) -> set[str]:
        """The workers to wake for ``arrived`` (queue -> new available tasks):
        per queue, that many of its serving workers, idle ones first, then by
        free cores at their last claim; all of them when there are fewer. A
        worker woken by name is marked ``woken`` (see ``Frames._claim``)."""
        turn = next(self._turn)
        chosen: set[str] = set()
        by_name: set[str] = set()
        for queue, count in arrived.items():
            serving = [s for s in self._serving(self.sessions.values()) if queue in s.queues]
            if count >= len(serving):
                chosen.update(s.name for s in serving)
                continue
            ranked = heapq.nsmallest(  # O(workers) for the usual one new task
                count,
                serving,
                key=lambda s: (
                    not s.idle,
                    -(s.free.cores if s.free is not None else 0.0),
                    (hash(s.name) + turn) % len(serving),
                ),
            )
            picked = [s.name for s in ranked]
            chosen.update(picked)
            by_name.update(picked)
        for name in by_name:
            self.sessions[name].woken = True
        return chosen

    @staticmethod
    def _serving(sessions: Iterable[Session]) -> list[Session]:
        """The sessions that may be given work now."""
        return [s for s in sessions if not s.draining and not s.revoked and not s.lost]

    def _wake_others(self, session: Session) -> None:
        """``session`` was woken by name and found nothing it could start:
        wake every other worker of its queues (one of them may fit)."""
        mine = set(session.queues)
        for other in self._serving(self.sessions.values()):
            if other is not session and mine.intersection(other.queues):
                self._spawn(other.send(p.WorkAvailable()))

    def _push_work_to_all(self) -> None:
        """A begin time came: every serving worker may claim again."""
        for session in list(self.sessions.values()):
            if not session.draining:
                self._spawn(session.send(p.WorkAvailable()))

    def _spawn(self, coro: Any) -> None:
        self._side.spawn(coro)

    # --- liveness --------------------------------------------------------------

    async def _declare_lost(self, name: str, seen: float) -> None:
        """Abandon a silent worker's attempts, then close its socket.

        Under the join lock, so that a reconnect of the same name is admitted
        either before (and then it was heard from: nothing is lost) or after
        the loss is on record (and its hello's attempts are then dropped, not
        resumed and abandoned behind its back). The session stops being
        answered first, and the close is not awaited: a frozen peer never
        answers the close handshake, and the loss must not wait for it.
        """
        async with self._joining.setdefault(name, asyncio.Lock()):
            if self.last_seen.get(name) != seen:
                return  # heard from, or joined again, while waiting for the lock
            session = self.sessions.get(name)
            if session is not None:
                session.lost = True
            try:
                abandoned = await self._record_loss(name)
            except BanyanError:  # e.g. the disk is full: try again next round
                return
            self.last_seen.pop(name, None)
            if session is not None and self.sessions.get(name) is session:
                del self.sessions[name]
                self._spawn(
                    _close_lost(session) if abandoned is not None else _close_moved(session)
                )
        if abandoned is None:
            log.info("worker %s is no longer this server's (joined another, or lost)", name)
        else:
            log.warning("worker %s lost; attempts abandoned: %s", name, abandoned)

    async def _record_loss(self, name: str) -> list[str] | None:
        """Record the loss: the abandoned attempts' tasks; None when a shared
        store has the worker on another server now (nothing to record here)."""
        if self._cluster is not None:
            return await self._cluster.record_loss(name)
        return await self._store.leave_worker(name, lost=True)

    async def _let_go(self, names: Collection[str]) -> None:
        """Close the sessions the shared store no longer has connected here
        (the worker joined another server, or another server declared it
        lost while this one could not beat): they are not this server's."""
        for name in names:
            async with self._joining.setdefault(name, asyncio.Lock()):
                session = self.sessions.get(name)
                if session is None:
                    continue
                session.lost = True
                del self.sessions[name]
                self.last_seen.pop(name, None)
                self._spawn(_close_moved(session))
            log.warning("worker %s: the database has it on another server (or lost)", name)

    async def _watch_silences(self) -> None:
        timeout = self._settings.worker_timeout_s
        period = monitor_period_s(timeout)
        touched = time.monotonic()
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for name, seen in list(self.last_seen.items()):
                if now - seen > timeout:
                    await self._declare_lost(name, seen)
            if self._cluster is not None:
                try:
                    await self._let_go(await self._cluster.round(dict(self.sessions)))
                except BanyanError as exc:  # the database is unreachable: next round
                    log.warning("cluster beat failed: %s", exc)
            if now - touched >= self._settings.heartbeat_interval_s and self.sessions:
                # Only those heard from since the last round, at the time they
                # were: a silent session is not a sign of life.
                wall = time.time() - now
                heard = {
                    name: wall + self.last_seen[name]
                    for name in self.sessions
                    if self.last_seen.get(name, touched) > touched
                }
                touched = now
                if heard:
                    with contextlib.suppress(BanyanError):
                        await self._store.touch_workers(heard)


async def _close_lost(session: Session) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await session.ws.close(code=p.CLOSE_LOST, message=b"silent too long: lost")


async def _close_moved(session: Session) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await session.ws.close(code=p.CLOSE_REPLACED, message=b"connected to another server")
