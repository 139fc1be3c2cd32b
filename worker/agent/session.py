"""The worker agent's main loop: connect (and reconnect) until told to stop,
one session per connection (hello, welcome, then the server's frames), what
each server frame does, and stopping (drain or stop the tasks; give up after
``server_timeout_s`` unreachable; exit at once when refused for good). Given
several servers, a lost or failed connection moves to the next one
(``worker.servers``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from typing import Any

import aiohttp

from banyan import protocol as p
from banyan.tokens import basic_auth_header
from worker import containment
from worker.agent.base import log
from worker.agent.config import (
    CONNECT_TIMEOUT_S,
    EXIT_TOKEN_REFUSED,
    EXIT_USAGE,
    FATAL_CLOSES,
    RECONNECT_MAX_S,
    TOKEN_REFUSED,
)
from worker.agent.slots import Slots
from worker.reaper import Reaper


class Agent(Slots):
    """The worker agent (the layers are described in ``worker.agent``)."""

    def request_stop(self, reason: str = "asked to stop") -> None:
        """From a signal handler: stop claiming, then drain or stop the tasks."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.exit_reason = reason
        log.info("%s: stopping (%s)", reason, "draining" if self.config.drain else "stopping tasks")
        self._spawn(self._heartbeat_once())
        self._spawn(self._return_queued())
        if not self.config.drain:
            for job in list(self.jobs.values()):
                job.stopped = True
                self._spawn(self._terminate(job))

    async def run(self) -> int:
        try:
            self.containment = containment.detect(
                enforce_memory=self.config.enforce_memory, kind=self.config.containment
            )
        except ValueError as exc:  # --containment cgroup where there is none
            log.error("%s", exc)
            return EXIT_USAGE
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        if self._deadline is not None:
            loop.call_later(
                self.remaining_s() or 0.0, self.request_stop, "its --time-limit was reached"
            )
        scope = getattr(self.containment, "scope", None)
        self._reaper = Reaper.start(log_format=self.config.log_format, scope=scope)
        containment.MANAGED_PIDS.add(self._reaper.pid)  # never taken for a task's orphan
        await self._progress.start()
        headers = {"Authorization": basic_auth_header(self.config.connection.token)}
        try:
            timeout = aiohttp.ClientTimeout(
                total=None, connect=CONNECT_TIMEOUT_S, sock_read=CONNECT_TIMEOUT_S
            )
            async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
                while not self._finished():
                    url = self.servers.gateway_url
                    try:
                        async with http.ws_connect(
                            url,
                            heartbeat=self._heartbeat_s,
                            max_msg_size=p.MAX_FRAME_BYTES,
                            protocols=(p.BATCH_PROTOCOL, p.LEASE_PROTOCOL),
                            ssl=self.servers.connection.ssl,
                        ) as ws:
                            self._batching = ws.protocol == p.BATCH_PROTOCOL
                            self._ws = ws
                            await self._session(ws)
                    except aiohttp.WSServerHandshakeError as exc:
                        if exc.status not in TOKEN_REFUSED:
                            log.warning("cannot reach %s: %s", url, exc)
                        else:  # not a network problem: trying again cannot help
                            log.error("%s", TOKEN_REFUSED[exc.status])
                            self.exit_code = EXIT_TOKEN_REFUSED
                            self.exit_reason = f"token refused ({exc.status})"
                            break
                    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                        log.warning("cannot reach %s: %s", url, exc)
                    finally:
                        if self._ws is not None and self._ws.close_code in FATAL_CLOSES:
                            self._refused(self._ws.close_code)
                        if self._connected:
                            self._connected = False
                            code = None if self._ws is None else self._ws.close_code
                            log.info(
                                "disconnected from %s%s",
                                self.servers.server,
                                "" if code is None else f" (close code {code})",
                            )
                        self._ws = None
                        self._outbox.clear()  # frames of that connection: void, as unsent
                    if self._finished() or self._fatal:
                        break
                    self._note_unreachable()
                    if self.servers.next():
                        continue  # another server (--server given more than once), at once
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), RECONNECT_MAX_S)
                        if self._unreachable_since is not None and not self.jobs:
                            break  # stopping, and nothing is left to run
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            if self._lease_timer is not None:
                self._lease_timer.cancel()
            for job in self.jobs.values():
                if job.task is not None:
                    job.task.kill()
            await self._progress.stop()
            if self._reaper is not None:
                self._reaper.close()
            if self.containment is not None:
                self.containment.close()
        log.info("exiting (code %d): %s", self.exit_code, self.exit_reason)
        return self.exit_code

    def _refused(self, code: int) -> None:
        """The server closed with ``code`` (``FATAL_CLOSES``): one line, then exit."""
        if self._fatal:
            return
        exit_code, text = FATAL_CLOSES[code]
        reason = self._close_reason or "no reason given"
        self._fatal = True
        self.exit_code = exit_code
        self.exit_reason = f"refused by the server (close code {code})"
        log.error("%s", text.format(f"{reason} ({code})"))

    def _note_unreachable(self) -> None:
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = now
        elif now - self._unreachable_since > self._server_timeout_s:
            log.error("server unreachable for %.0f s: stopping every task", self._server_timeout_s)
            for job in list(self.jobs.values()):
                job.stopped = job.forgotten = True
                if job.task is not None:
                    job.task.kill()
            self.unreported.clear()
            self.jobs.clear()
            self.queued.clear()  # the server hands these to others (uncounted)
            self.returning.clear()
            self.started.clear()
            self._free_gpus = list(self.config.gpu_indices)

    # --- one connection --------------------------------------------------------

    async def _session(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        hello = p.Hello(
            name=self.config.name,
            capacity=self.config.capacity,
            queues=self.config.queues,
            running=self._held(),
            host=socket.gethostname(),
            pid=os.getpid(),
            remaining_s=self.remaining_s(),
            secret=self._secret,
            containment=self.containment.kind if self.containment is not None else None,
        )
        hello_sent = time.monotonic()
        self._close_reason = ""
        await ws.send_str(p.encode(hello))
        first = await ws.receive(timeout=30)
        if first.type != aiohttp.WSMsgType.TEXT:
            if first.type == aiohttp.WSMsgType.CLOSE:
                self._close_reason = str(first.extra or "")
            if ws.close_code not in FATAL_CLOSES:  # those are logged once, as the exit
                log.warning("gateway closed the connection: %s %s", ws.close_code, first.extra)
            return
        welcome = p.decode_server_frame(first.data)
        if not isinstance(welcome, p.Welcome):
            return
        self._unreachable_since = None
        self._connected = True
        self.servers.connected()
        self._secret = welcome.secret
        self.name = welcome.worker
        log.info(
            "connected to %s as %s (heartbeat %.1f s; %d attempts resumed, %d dropped; %s)",
            self.servers.server,
            welcome.worker,
            welcome.heartbeat_interval_s,
            len(welcome.resumed),
            len(welcome.dropped),
            "frames batched" if self._batching else "single frames",
        )
        self._heartbeat_s = welcome.heartbeat_interval_s
        self._server_timeout_s = welcome.server_timeout_s
        leased = ws.protocol in (p.LEASE_PROTOCOL, p.BATCH_PROTOCOL)
        self._start_lease(leased, welcome, hello_sent)
        for task_id in welcome.dropped:  # the server no longer counts these as ours
            self.queued.pop(task_id, None)
            self.returning.pop(task_id, None)
            self.started.pop(task_id, None)
            job = self.jobs.get(task_id)
            if job is not None and job.task is not None:
                job.stopped = True
                job.task.kill()
        for started in list(self.started.values()):  # before their reports
            await self._send(started)
        for report in list(self.unreported.values()):
            await self._send_report(report)
        for returned in list(self.returning.values()):
            await self._send(returned)
        heartbeat = self._background.spawn(self._heartbeats(), name="heartbeat")
        try:
            self._claiming = False
            await self._claim()
            if self._stopping.is_set() and self._finished():
                await self._send(p.Bye())
                await self._send_outbox()
                return
            while True:
                msg = await ws.receive()
                if msg.type == aiohttp.WSMsgType.CLOSE:
                    self._close_reason = str(msg.extra or "")
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                await self._handle(p.decode_server_frame(msg.data))
                if await self._maybe_leave():
                    break
        finally:
            await self._send_outbox()  # what this session's last turn left (a no-op once closed)
            self._claiming = False  # a claim unanswered on a closed socket is void
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    def _held(self) -> list[p.Held]:
        """Attempts this worker still answers for: running, or ended but not yet
        acknowledged (their reports follow the hello)."""
        held = {t: j.attempt.execution_key for t, j in self.jobs.items()}
        held.update({t: r.execution_key for t, r in self.unreported.items()})
        held.update({t: a.execution_key for t, a in self.queued.items()})
        held.update({t: r.execution_key for t, r in self.returning.items()})
        return [p.Held(task=t, execution_key=k) for t, k in held.items()]

    async def _handle(self, frame: Any) -> None:
        if isinstance(frame, p.ServerBatch):
            for one in frame.frames:
                await self._handle(one)
        elif isinstance(frame, p.HeartbeatAck):
            self._renew(self._beats.acked(frame.seq))
        elif isinstance(frame, p.Assigned):
            await self._on_assigned(frame)
        elif isinstance(frame, p.WorkAvailable):
            self._queue_empty = False
            await self._claim()
        elif isinstance(frame, p.Cancel):
            waiting = self.queued.get(frame.task)
            if waiting is not None and waiting.execution_key == frame.execution_key:
                # Never started: it ends at once, with no process.
                del self.queued[frame.task]
                report = p.Finished(
                    task=frame.task, execution_key=frame.execution_key, exit_status="cancelled"
                )
                self.unreported[frame.task] = report
                await self._send_report(report)
            job = self.jobs.get(frame.task)
            if job is not None and job.attempt.execution_key == frame.execution_key:
                job.cancelled = True
                self._spawn(self._terminate(job))
        elif isinstance(frame, p.GiveBack):
            waiting = self.queued.get(frame.task)
            if waiting is not None and waiting.execution_key == frame.execution_key:
                del self.queued[frame.task]  # an idle worker can start it now
                await self._hand_back(waiting)
        elif isinstance(frame, p.Accepted):
            self._renew(self._report_sent_at.pop(frame.task, None))
            self.unreported.pop(frame.task, None)
            self.returning.pop(frame.task, None)
            self.started.pop(frame.task, None)
            if self.config.burst and not self.jobs and not self.unreported:
                await self._claim()  # everything is on record: is anything left?
        elif isinstance(frame, p.Refused):
            self._renew(self._report_sent_at.pop(frame.task, None))
            log.warning("server refused a report on %s: %s", frame.task, frame.message)
            self.unreported.pop(frame.task, None)
            self.returning.pop(frame.task, None)
            self.started.pop(frame.task, None)
            self.queued.pop(frame.task, None)
            job = self.jobs.get(frame.task)
            if job is not None and frame.code == 409 and job.task is not None:
                job.stopped = True  # superseded: the server gave this task to someone else
                job.task.kill()
            if self.config.burst and not self.jobs and not self.unreported:
                await self._claim()
