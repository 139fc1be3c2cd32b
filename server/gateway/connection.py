"""The worker gateway's websocket (``GET /workers/connect``): authenticate the
token, read the hello, admit the worker (``server.admission``), record the
join and send the welcome, then read frames until the socket closes, applying
them concurrently so that one worker's reports share commits."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import WSMsgType, web

from banyan import protocol as p
from banyan.errors import BanyanError, Unauthorized
from banyan.states import State
from banyan.tokens import Caller
from server import admission
from server.admission import CLOSE_TRY_AGAIN
from server.auth import AUTH, WORKERS
from server.domain import identity
from server.gateway.frames import Frames
from server.gateway.lifetime import log
from server.gateway.session import Session


class Gateway(Frames):
    """The worker gateway (the layers are described in ``server.gateway``)."""

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
            max_msg_size=p.MAX_FRAME_BYTES,
            heartbeat=None,
            protocols=(p.BATCH_PROTOCOL, p.LEASE_PROTOCOL),
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
            if session.woken:  # woken for a task it will not claim now
                self._wake_others(session)
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
            away = name in self.last_seen and not connected
            if self._cluster is not None and not connected and not away:
                # Another server may hold it, or have held it until it stopped.
                connected, away = await self._cluster.presence(name)
            proven = await admission.check(
                self._store,
                name,
                hello,
                connected=connected,
                away=away,
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
            containment=hello.containment,
            held=held,
            same_process=proven,
            secret=identity.secret_digest(secret),
        )
        session = Session(
            name=name, ws=ws, caller=caller, queues=hello.queues, capacity=hello.capacity
        )
        if self._cluster is not None:
            session.gate = self._cluster.on_record
        session.batching = ws.ws_protocol == p.BATCH_PROTOCOL
        session.spawn = self._spawn
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
                await session.flush()
                await session.ws.close(code=p.CLOSE_NORMAL, message=b"bye")
                return True
            # Frames are handled concurrently so that the reports of one worker
            # share commits (group commit); tasks start in frame order, and each
            # queues its write at once, so the writes keep the frames' order.
            # A batch's frames are handled exactly so, one after the other.
            for one in frame.frames if isinstance(frame, p.WorkerBatch) else (frame,):
                await session.inflight.acquire()
                job = asyncio.create_task(self._dispatch(session, one))
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
