"""The worker gateway (``GET /workers/connect``): one websocket per worker.

The gateway knows which worker holds which attempt (with its key), hands out
claims, applies reports, pushes ``work_available`` when the event hub sees a
task become available in a queue a worker serves and ``cancel`` when a task
it runs is asked to stop, and declares a worker lost once it has been silent
for ``worker_timeout_s`` (its attempts are then abandoned and follow the retry
rule). A worker that reconnects in time re-attaches to the attempts it still
runs. Nothing here polls: the monitor only watches the clock for silences.

Identity (``server.domain.identity``): a worker token's connection is the
worker named by the token; one connection per worker, unless the same
process proves itself with the secret of its last ``welcome`` (4409
otherwise); a revoked token's connections are closed with 4401
(``close_revoked``, from ``server.revocation``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

from banyan import protocol as p
from banyan.errors import BanyanError, Unauthorized
from banyan.models import MemoryUsage
from banyan.resources import Amounts, Resources
from banyan.states import State
from banyan.supervise import SideTasks
from banyan.tokens import Caller
from server import admission
from server.admission import CLOSE_TRY_AGAIN
from server.auth import AUTH, WORKERS
from server.begins import BeginTimer
from server.domain import claims, identity
from server.hub import Event, EventHub
from server.settings import Settings
from server.stores.base import ClaimedAttempt, Store

log = logging.getLogger(__name__)
T = TypeVar("T")
# While the store refuses writes for lack of space (507) or is busy (503), a
# claim or a final report is tried again after these pauses (doubling), for as
# long as the worker stays connected; the worker just waits for the answer.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0
TRANSIENT = (503, 507)


@dataclass
class Session:
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
    revoked: bool = False  # its token was revoked: nothing more it sends is applied
    # Declared lost (silent past worker_timeout_s): nothing more it sends is
    # applied or answered, so no late ack can extend the worker's lease.
    lost: bool = False
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    inflight: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(64))
    pending: set[asyncio.Task[None]] = field(default_factory=set)
    # Monotonic time the worker's lifetime ends (``banyan-worker --time-limit``).
    deadline: float | None = None

    def remaining_s(self, now: float | None = None) -> float | None:
        """The worker's remaining lifetime, as it last told it; None: no lifetime."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - (time.monotonic() if now is None else now))

    async def send(self, frame: Any) -> None:
        if self.ws.closed:
            return
        async with self.send_lock:
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await self.ws.send_str(p.encode(frame))


class Gateway:
    def __init__(self, store: Store, settings: Settings, hub: EventHub) -> None:
        self._store = store
        self._settings = settings
        self.sessions: dict[str, Session] = {}
        self.last_seen: dict[str, float] = {}  # monotonic; also for workers not connected now
        self._joining: dict[str, asyncio.Lock] = {}
        self._monitor: asyncio.Task[Any] | None = None
        # Fire-and-forget sends and the silence monitor: a failure stops the server.
        self._side = SideTasks("gateway")
        self._begins = BeginTimer(store, self._push_work_to_all)
        self._begin_task: asyncio.Task[Any] | None = None
        hub.subscribe(self._on_events)

    # --- lifetime --------------------------------------------------------------

    async def start(self) -> None:
        # Workers connected before a restart get worker_timeout_s to come back.
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

    # --- the connection --------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            caller = await request.app[AUTH].caller(request)
        except Unauthorized as exc:
            raise web.HTTPUnauthorized(
                reason=exc.message, headers={"WWW-Authenticate": 'Basic realm="banyan"'}
            ) from exc
        if caller.role not in WORKERS:
            raise web.HTTPForbidden(reason="the worker gateway needs a worker or admin token")
        ws = web.WebSocketResponse(
            max_msg_size=p.MAX_FRAME_BYTES, heartbeat=None, protocols=(p.LEASE_PROTOCOL,)
        )
        await ws.prepare(request)
        log.info("worker connection from %s (token %s)", request.remote, caller.name)
        try:
            hello = await self._hello(ws)
        except BanyanError as exc:
            await ws.close(code=p.CLOSE_BAD_FRAME, message=exc.message[:120].encode())
            return ws
        try:
            session = await self._join(ws, caller, hello)
        except (
            admission.Refusal
        ) as exc:  # not this worker's name, or it is taken: one line, no retry
            log.warning(
                "worker connection from %s (token %s) refused: %s",
                request.remote,
                caller.name,
                exc.message,
            )
            await ws.close(code=exc.code, message=admission.close_reason(exc.message))
            return ws
        except BanyanError as exc:  # e.g. the disk is full: the worker connects again later
            log.warning("worker %s: join refused: %s", hello.name, exc.message)
            await ws.close(code=CLOSE_TRY_AGAIN, message=admission.close_reason(exc.message))
            return ws
        clean = False
        try:
            clean = await self._serve(session)
        except Exception:  # the handshake is done: no HTTP error response can follow
            log.exception("worker %s: gateway failure", session.name)
            await ws.close(code=1011, message=b"internal error")
        finally:
            if self.sessions.get(session.name) is session:
                del self.sessions[session.name]
                if clean:
                    log.info("worker %s left", session.name)
                    self.last_seen.pop(session.name, None)
                    try:
                        await self._store.leave_worker(session.name, lost=False)
                    except BanyanError:  # not recorded: let the monitor retire it
                        self.last_seen[session.name] = time.monotonic()
                else:  # a dropped connection: lost only if it stays silent
                    log.info(
                        "worker %s disconnected; lost unless it is back within %.0f s",
                        session.name,
                        self._settings.worker_timeout_s,
                    )
                    self.last_seen[session.name] = time.monotonic()
        return ws

    async def _hello(self, ws: web.WebSocketResponse) -> p.Hello:
        try:
            msg = await ws.receive(timeout=self._settings.hello_timeout_s)
        except TimeoutError as exc:
            raise BanyanError("no hello frame") from exc
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            raise BanyanError("expected a hello frame")
        frame = p.decode_worker_frame(msg.data)
        if not isinstance(frame, p.Hello):
            raise BanyanError("the first frame must be hello")
        if frame.version != p.PROTOCOL_VERSION:
            raise BanyanError(f"protocol version {frame.version} is not {p.PROTOCOL_VERSION}")
        return frame

    async def _join(self, ws: web.WebSocketResponse, caller: Caller, hello: p.Hello) -> Session:
        """Admit the connection as the worker its token names (server.admission)."""
        name = admission.name_of(caller, hello)
        # One join per name at a time: two connections must not both see it free.
        async with self._joining.setdefault(name, asyncio.Lock()):
            old = self.sessions.get(name)
            connected = old is not None and not old.ws.closed
            proven = await admission.check(
                self._store,
                name,
                hello,
                connected=connected,
                away=name in self.last_seen and not connected,
                worker_timeout_s=self._settings.worker_timeout_s,
            )
            if old is not None:
                del self.sessions[name]
                await old.ws.close(code=p.CLOSE_REPLACED, message=b"replaced by a reconnect")
            return await self._record_join(ws, caller, hello, name, proven=proven)

    async def _record_join(
        self, ws: web.WebSocketResponse, caller: Caller, hello: p.Hello, name: str, *, proven: bool
    ) -> Session:
        secret = identity.new_secret()
        held = [(h.task, h.execution_key) for h in hello.running]
        resumed, dropped = await self._store.join_worker(
            name=name,
            token=caller.name,
            capacity=hello.capacity.canonical(),
            queues=hello.queues,
            host=hello.host,
            pid=hello.pid,
            held=held,
            same_process=proven,
            secret=identity.secret_digest(secret),
        )
        session = Session(
            name=name, ws=ws, caller=caller, queues=hello.queues, capacity=hello.capacity
        )
        if hello.remaining_s is not None:
            session.deadline = time.monotonic() + hello.remaining_s
        keys = dict(held)
        session.held = {task: keys[task] for task in resumed}
        self.sessions[name] = session
        self.last_seen[name] = time.monotonic()
        log.info(
            "worker %s %s (host %s, pid %d, queues %s; resumed %d, dropped %d attempts)",
            name,
            "reconnected" if proven else "joined",
            hello.host,
            hello.pid,
            ",".join(hello.queues),
            len(resumed),
            len(dropped),
            extra={"worker": name},
        )
        s = self._settings
        await session.send(
            p.Welcome(
                worker=name,
                heartbeat_interval_s=s.heartbeat_interval_s,
                worker_timeout_s=s.worker_timeout_s,
                server_timeout_s=s.server_timeout_s,
                resumed=resumed,
                dropped=dropped,
                secret=secret,
            )
        )
        for task in resumed:  # a cancel asked for while it was away
            if (await self._store.get_task(task))["state"] == State.PENDING_CANCELLATION:
                await session.send(p.Cancel(task=task, execution_key=session.held[task]))
        return session

    async def _serve(self, session: Session) -> bool:
        """Read frames until the socket closes; True when the worker said bye."""
        async for msg in session.ws:
            if session.lost:
                continue  # read to the close; a lost session is not a sign of life
            self.last_seen[session.name] = time.monotonic()
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            try:
                frame = p.decode_worker_frame(msg.data)
            except BanyanError as exc:
                await session.ws.close(code=p.CLOSE_BAD_FRAME, message=exc.message[:120].encode())
                return False
            if isinstance(frame, p.Bye):
                await self._settle(session)
                await session.ws.close(code=p.CLOSE_NORMAL, message=b"bye")
                return True
            # Frames are handled concurrently so that the reports of one worker
            # share commits (group commit); tasks start in frame order, and each
            # queues its write at once, so the writes keep the frames' order.
            await session.inflight.acquire()
            job = asyncio.create_task(self._dispatch(session, frame))
            session.pending.add(job)
            job.add_done_callback(session.pending.discard)
            job.add_done_callback(lambda _: session.inflight.release())
        await self._settle(session)
        return False

    async def _settle(self, session: Session) -> None:
        """Wait for this worker's frames still being applied."""
        if session.pending:
            await asyncio.gather(*session.pending, return_exceptions=True)

    async def _dispatch(self, session: Session, frame: Any) -> None:
        try:
            await self._apply(session, frame)
        except BanyanError as exc:  # e.g. the disk is full: tell the worker, keep the socket
            log.warning("worker %s: %s failed: %s", session.name, frame.type, exc.message)
            if isinstance(frame, p.Claim):
                await session.send(p.Assigned(attempts=[]))
        except Exception:
            log.exception("worker %s: %s failed", session.name, frame.type)
            await session.ws.close(code=1011, message=b"internal error")

    async def _apply(self, session: Session, frame: Any) -> None:
        if session.revoked or session.lost:  # the socket is being closed
            return
        if isinstance(frame, p.Heartbeat):
            session.draining = frame.draining
            if frame.seq is not None:  # last_seen was reset when it was read: say so
                await session.send(p.HeartbeatAck(seq=frame.seq))
        elif isinstance(frame, p.Hello):
            await session.ws.close(code=p.CLOSE_BAD_FRAME, message=b"hello sent twice")
        elif isinstance(frame, p.Claim):
            await self._claim(session, frame)
        else:
            await self._report(session, frame)

    async def _claim(self, session: Session, frame: p.Claim) -> None:
        if frame.remaining_s is not None:  # the worker's own count is the one to trust
            session.deadline = time.monotonic() + frame.remaining_s
        if session.draining:
            attempts: list[ClaimedAttempt] = []
        else:
            depth = claims.prefetch_depth(
                asked=frame.prefetch,
                max_prefetch=self._settings.max_prefetch,
                others_idle=self._others_idle(session),
            )
            attempts = await self._retrying(
                session,
                lambda: self._store.claim(
                    worker=session.name,
                    token=session.caller.name,
                    free=frame.free,
                    queues=session.queues,
                    limit=frame.limit,
                    remaining_s=frame.remaining_s,
                    prefetch=depth,
                    capacity=session.capacity,
                ),
            )
            has_room = not Amounts.of(frame.free).no_cores_left
            session.idle = has_room and not any(not a.get("queued") for a in attempts)
        for attempt in attempts:
            session.held[attempt["task"]] = attempt["execution_key"]
            if attempt.get("queued"):
                session.queued.add(attempt["task"])
        await session.send(p.Assigned(attempts=[p.AssignedAttempt(**a) for a in attempts]))
        if session.idle:
            await self._reclaim_for(session)

    async def _reclaim_for(self, idle: Session) -> None:
        """``idle`` has a free slot and found nothing: the other workers of its
        queues hand back what they hold unstarted, so it can start that now
        (the returns make the tasks available, which wakes ``idle`` up)."""
        mine = set(idle.queues)
        for other in list(self.sessions.values()):
            if (
                other is idle
                or other.revoked
                or not other.queued
                or not mine.intersection(other.queues)
            ):
                continue
            for task in list(other.queued):
                key = other.held.get(task)
                if key is not None:
                    await other.send(p.GiveBack(task=task, execution_key=key))

    def _others_idle(self, session: Session) -> bool:
        """Whether another worker serving one of ``session``'s queues has a free
        slot and found nothing at its last claim (prefetch would starve it)."""
        mine = set(session.queues)
        return any(
            other.idle
            and not other.draining
            and not other.revoked
            and mine.intersection(other.queues)
            for other in self.sessions.values()
            if other is not session
        )

    async def _report(self, session: Session, frame: Any) -> None:
        task, key = frame.task, frame.execution_key
        try:
            # A finished report is checked by the store (so a repeat of one already
            # applied is harmless); the others need the attempt held right now.
            if not isinstance(frame, p.Finished) and session.held.get(task) != key:
                raise BanyanError(
                    f"the attempt of task {task} with this execution_key is not held by "
                    f"{session.name} (superseded or unknown); the report is refused"
                )
            if isinstance(frame, p.Finished):
                # Not refused for lack of space: the worker would drop the result.
                await self._retrying(
                    session,
                    lambda: self._store.finish(
                        task,
                        key,
                        exit_status=frame.exit_status,
                        exit_code=frame.exit_code,
                        usage=frame.usage,
                        caller=session.caller,
                        worker=session.name,
                    ),
                )
                session.held.pop(task, None)
                session.queued.discard(task)
                await session.send(p.Accepted(task=task, execution_key=key))
            elif isinstance(frame, p.Started):
                session.queued.discard(task)
                await self._store.start_queued(
                    task, key, time=frame.time, caller=session.caller, worker=session.name
                )
            elif isinstance(frame, p.Returned):
                await self._retrying(
                    session,
                    lambda: self._store.return_queued(
                        task, key, caller=session.caller, worker=session.name
                    ),
                )
                session.held.pop(task, None)
                session.queued.discard(task)
                await session.send(p.Accepted(task=task, execution_key=key))
            elif isinstance(frame, p.Progress):
                progress = frame.model_dump(include={"percent", "message"}, exclude_none=True)
                await self._store.report_progress(task, key, progress, session.caller)
            elif isinstance(frame, p.Usage):
                record = MemoryUsage(
                    task=task,
                    time=frame.time,
                    resident_memory_bytes=frame.resident_memory_bytes,
                    cpu_percent=frame.cpu_percent,
                )
                await self._store.add_memory_usage([record], session.caller)
            elif isinstance(frame, p.Output):
                await self._store.append_log(
                    task, key, frame.stream, frame.data.encode(), worker=session.name
                )
        except BanyanError as exc:
            if isinstance(frame, (p.Finished, p.Returned)):
                session.held.pop(task, None)
                session.queued.discard(task)
            code = exc.status if exc.status != 500 else 409
            await session.send(
                p.Refused(task=task, execution_key=key, code=code, message=exc.message)
            )

    async def _retrying(self, session: Session, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``; again after a pause while it fails for a transient reason
        (a full disk, a busy database) and the worker is still connected. A
        failed write left nothing behind (its transaction was rolled back), so
        trying it again is safe."""
        delay = RETRY_FIRST_S
        while True:
            try:
                return await call()
            except BanyanError as exc:
                if exc.status not in TRANSIENT or session.ws.closed:
                    raise
                log.warning("worker %s: %s; trying again in %.1f s", session.name, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

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
        queues: set[str] = set()
        cancels: list[str] = []
        for event in events:
            data = event["data"]
            if event["type"] in ("task.state", "task.created"):
                if data.get("state") == State.AVAILABLE:
                    queues.add(data.get("queue", ""))
                elif data.get("state") == State.PENDING_CANCELLATION:
                    cancels.append(data["_id"])
        if not queues and not cancels:
            return
        if queues:
            self._begins.poke()
        for session in list(self.sessions.values()):
            frames: list[Any] = []
            if queues.intersection(session.queues) and not session.draining:
                frames.append(p.WorkAvailable())
            frames += [
                p.Cancel(task=t, execution_key=session.held[t])
                for t in cancels
                if t in session.held
            ]
            for frame in frames:
                self._spawn(session.send(frame))

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
                abandoned = await self._store.leave_worker(name, lost=True)
            except BanyanError:  # e.g. the disk is full: try again next round
                return
            self.last_seen.pop(name, None)
            if session is not None and self.sessions.get(name) is session:
                del self.sessions[name]
                self._spawn(self._close_lost(session))
        log.warning("worker %s lost; attempts abandoned: %s", name, abandoned)

    @staticmethod
    async def _close_lost(session: Session) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await session.ws.close(code=p.CLOSE_LOST, message=b"silent too long: lost")

    async def _watch_silences(self) -> None:
        timeout = self._settings.worker_timeout_s
        period = min(1.0, timeout / 4)
        touched = time.monotonic()
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for name, seen in list(self.last_seen.items()):
                if now - seen > timeout:
                    await self._declare_lost(name, seen)
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
