"""What the worker gateway does with a joined worker's frames: heartbeats,
claims (with the prefetch depth and the give-back to an idle worker) and
reports (finished, started, returned, progress, usage, output), each retried
while the store is transiently unable to write."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from banyan import protocol as p
from banyan.errors import BanyanError
from banyan.models import MemoryUsage
from banyan.resources import Amounts
from server.domain import claims
from server.gateway.lifetime import GatewayBase, log
from server.gateway.session import Session
from server.stores.base import ClaimedAttempt

T = TypeVar("T")
# While the store refuses writes for lack of space (507) or is busy (503), a
# claim or a final report is tried again after these pauses (doubling), for as
# long as the worker stays connected; the worker just waits for the answer.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0
TRANSIENT = (503, 507)


class Frames(GatewayBase):
    """Claims and reports, on top of the gateway's state."""

    async def _apply(self, session: Session, frame: Any) -> None:
        if session.revoked or session.lost:  # the socket is being closed
            return
        if isinstance(frame, p.Heartbeat):
            if session.draining != frame.draining:
                session.draining = frame.draining
                self.sessions.changes += 1  # it serves no more, or again
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
        session.free = frame.free
        woken, session.woken = session.woken, False
        session.claiming, session.missed = True, False
        if session.draining:
            attempts: list[ClaimedAttempt] = []
            starts_none = True
        else:
            depth = claims.prefetch_depth(
                asked=frame.prefetch,
                max_prefetch=self._settings.max_prefetch,
                others_idle=self._others_idle(session),
            )
            claiming = self._retrying(
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
            try:
                attempts = await claiming
            finally:
                session.claiming = False
            # Set with no await since ``claiming`` ended: an event seen after
            # it finds the session idle and wakes it (``_on_events``).
            has_room = not Amounts.of(frame.free).no_cores_left
            starts_none = all(a.get("queued") for a in attempts)
            session.idle = has_room and starts_none
        session.claiming = False
        for attempt in attempts:
            session.held[attempt["task"]] = attempt["execution_key"]
            if attempt.get("queued"):
                session.queued.add(attempt["task"])
        await session.send(p.Assigned(attempts=[p.AssignedAttempt(**a) for a in attempts]))
        if woken and starts_none:
            self._wake_others(session)  # what woke it may fit another worker
        if session.idle:
            if session.missed:  # another server's claim may have held what it wanted
                await session.send(p.WorkAvailable())
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
