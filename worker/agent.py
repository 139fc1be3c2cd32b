"""The worker agent: one websocket to the server's gateway, a heartbeat,
claims sized to what is free, a runner per attempt, and reports.

Main loop + named side tasks: ``run()`` connects (and reconnects) until told
to stop; each connection has a reader and a heartbeat task. A signal only
sets the stop flag. While the server is unreachable the tasks keep running
and their end reports wait in memory (the task cache); past
``server_timeout_s`` the agent assumes its attempts were abandoned, kills them
and drops the cache.

Fencing (worker/lease.py): the agent holds a lease that only answers from the
server renew (a ``heartbeat_ack``, ``welcome``, ``assigned``, ``accepted`` or
``refused``, each by the send time of the frame it answers). When it lapses,
the reaper sidecar (which runs even while this process is frozen) and the
agent (alive but cut off) stop every task, so that nothing is still running
when the server hands the task to another worker; their reports say
``abandoned (worker stopped)``, and on reconnect the server either applies
them or refuses them (409, superseded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from banyan import protocol as p
from banyan.client.discovery import Connection
from banyan.constants import HEARTBEAT_INTERVAL_S, SERVER_TIMEOUT_S
from banyan.resources import Amounts, Resources, free_share
from banyan.states import SUCCESS, TIME_LIMIT_STATUS
from banyan.supervise import SideTasks
from banyan.tokens import basic_auth_header
from worker import containment, runner
from worker.lease import Beats, Lease, Terms, terms
from worker.progress import ENV_SOCKET, ProgressListener
from worker.reaper import Reaper

log = logging.getLogger(__name__)
STOPPED = "abandoned (worker stopped)"  # follows the retry rule, like a lost worker
RECONNECT_MAX_S = 2.0
OUTPUT_FLUSH_S = 0.1
DEFAULT_PREFETCH = 8  # banyan-worker --prefetch (docs/prefetch.md: the trade-off)
CONNECT_TIMEOUT_S = 15.0  # TCP connect, and the upgrade's response: a cut network must not hang it
FENCED = "the worker's lease lapsed (no word from the server): stopped"
NOT_STARTED = "not started: the worker's lease had lapsed"
# Exit codes of banyan-worker (listed in its --help).
EXIT_OK = 0
EXIT_USAGE = 2  # as for bad arguments
EXIT_TOKEN_REFUSED = 77  # sysexits' EX_NOPERM: 401/403 at connect, retrying cannot help
EXIT_ALREADY_CONNECTED = 75  # sysexits' EX_TEMPFAIL: another process is this worker (4409)
TOKEN_REFUSED = {
    401: "the server refused the token (401): it is unknown or revoked",
    403: "the server refused the token (403): its role cannot run a worker; "
    "use a worker or admin token (banyan-server token create --role worker)",
}
# Close codes after which reconnecting cannot help: the exit code, and what to say.
FATAL_CLOSES = {
    p.CLOSE_UNAUTHORIZED: (EXIT_TOKEN_REFUSED, "the server closed the connection: {}"),
    p.CLOSE_FORBIDDEN: (EXIT_TOKEN_REFUSED, "the server refused this worker: {}"),
    p.CLOSE_DUPLICATE: (
        EXIT_ALREADY_CONNECTED,
        "the server refused this worker: {} (give each worker a token of its own)",
    ),
}


def _path_with_banyan() -> str:
    """$PATH with this installation's bin directory appended, so ``banyan
    progress`` works inside tasks even when Banyan lives in a virtualenv."""
    path = os.environ.get("PATH", os.defpath)
    here = os.path.dirname(sys.executable)
    return path if here in path.split(os.pathsep) else f"{path}{os.pathsep}{here}"


@dataclass
class WorkerConfig:
    connection: Connection
    name: str | None  # None: the worker token's name (an admin token: hostname:pid)
    capacity: Resources
    gpu_indices: list[int] = field(default_factory=list)
    queues: list[str] = field(default_factory=lambda: ["default"])
    drain: bool = False
    usage_interval_s: float = 2.0
    max_log_bytes: int = 1 << 20
    claim_limit: int = 32
    # Attempts held queued beyond what runs, started the moment a slot frees
    # (the server caps it with max_prefetch, and grants none while another
    # worker of the same queues is idle). 0: claim only what fits now.
    prefetch: int = DEFAULT_PREFETCH
    burst: bool = False  # exit once nothing is left to claim or run (tests, batch use)
    log_format: str = "text"  # also for the reaper sidecar's lines
    enforce_memory: bool = False  # a task's memory request is its cgroup's memory.max
    containment: str = "auto"  # or insist on "cgroup" / "subreaper"
    # The worker's lifetime from its start (--time-limit), as a batch allocation's:
    # claims carry what is left, and the worker stops when it runs out.
    time_limit_s: float | None = None


@dataclass
class Job:
    attempt: p.AssignedAttempt
    request: Resources
    gpus: list[int]
    task: runner.RunningTask | None = None
    cancelled: bool = False  # the server asked to stop it
    stopped: bool = False  # the worker is shutting down without draining
    output: dict[str, bytearray] = field(
        default_factory=lambda: {"stdout": bytearray(), "stderr": bytearray()}
    )
    flush_scheduled: bool = False
    fenced: bool = False  # stopped because the lease lapsed
    forgotten: bool = False  # dropped with the task cache: nothing is reported
    timed_out: bool = False  # stopped at its time_limit: "failure (time limit)"
    limit_timer: asyncio.TimerHandle | None = None


class Agent:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.jobs: dict[str, Job] = {}
        self.unreported: dict[str, p.Finished] = {}
        # Prefetch: assigned attempts not started yet (in the order handed out),
        # and those handed back, until the server accepts or refuses the return.
        self.queued: dict[str, p.AssignedAttempt] = {}
        self.returning: dict[str, p.Returned] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._send_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._claiming = False
        self._claim_again = False
        self._heartbeat_s = HEARTBEAT_INTERVAL_S
        self._server_timeout_s = SERVER_TIMEOUT_S
        self._unreachable_since: float | None = None
        self._reaper: Reaper | None = None
        self.containment: containment.Containment | None = None
        self._progress = ProgressListener(self._on_progress)
        # Follow, flush, send and terminate tasks: a failure stops the worker (non-zero).
        self._background = SideTasks("worker")
        self._free_gpus = list(config.gpu_indices)
        self._task_env = {ENV_SOCKET: str(self._progress.path), "PATH": _path_with_banyan()}
        self.ran = 0  # attempts finished, for tests and logs
        self._queue_empty = False  # the last claim found nothing (for burst mode)
        # Whether the claim in flight was sent with nothing running or unreported: only
        # then does an empty answer mean the queue is empty. The server applies a
        # worker's frames concurrently, so a claim sent beside a final report may be
        # answered before that report's continuations become available.
        self._claim_settled = False
        # The lease; None while the server does not answer numbered heartbeats.
        self._lease: Lease | None = None
        self._beats = Beats()
        self._beat_s = HEARTBEAT_INTERVAL_S
        self._claim_sent_at: float | None = None
        self._report_sent_at: dict[str, float] = {}
        self._lease_timer: asyncio.TimerHandle | None = None
        self._sidecar_deadline: float | None = None
        self.fenced = 0  # attempts stopped by the lease, for tests and logs
        self.exit_code = EXIT_OK
        self._connected = False
        self._fatal = False  # refused for good (revoked, not this token's, taken): exit
        # This process's proof of identity, handed out in welcome and shown in
        # every later hello: it re-attaches to the attempts of this process.
        self._secret: str | None = None
        self._close_reason = ""  # the reason in the server's last close frame
        self.name = config.name  # as the server named it in welcome
        self.exit_reason = "nothing left to run (--burst)"  # unless something else ends it
        limit = config.time_limit_s
        self._deadline = None if limit is None else time.monotonic() + limit

    # --- lifetime --------------------------------------------------------------

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
        url = self.config.connection.ws_base + "/workers/connect"
        try:
            timeout = aiohttp.ClientTimeout(
                total=None, connect=CONNECT_TIMEOUT_S, sock_read=CONNECT_TIMEOUT_S
            )
            async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
                while not self._finished():
                    try:
                        async with http.ws_connect(
                            url,
                            heartbeat=self._heartbeat_s,
                            max_msg_size=p.MAX_FRAME_BYTES,
                            protocols=(p.LEASE_PROTOCOL,),
                            ssl=self.config.connection.ssl,
                        ) as ws:
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
                                self.config.connection.server,
                                "" if code is None else f" (close code {code})",
                            )
                        self._ws = None
                    if self._finished() or self._fatal:
                        break
                    self._note_unreachable()
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

    @property
    def reaper(self) -> Reaper | None:
        """The sidecar that kills this worker's tasks if it dies or its lease lapses."""
        return self._reaper

    def _finished(self) -> bool:
        # Never while a claim is in flight: its answer may hand this worker tasks.
        idle = not self.jobs and not self.unreported and not self._claiming
        idle = idle and not self.queued and not self.returning
        return idle and (self._stopping.is_set() or (self.config.burst and self._queue_empty))

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
        self._secret = welcome.secret
        self.name = welcome.worker
        log.info(
            "connected to %s as %s (heartbeat %.1f s; %d attempts resumed, %d dropped)",
            self.config.connection.server,
            welcome.worker,
            welcome.heartbeat_interval_s,
            len(welcome.resumed),
            len(welcome.dropped),
        )
        self._heartbeat_s = welcome.heartbeat_interval_s
        self._server_timeout_s = welcome.server_timeout_s
        self._start_lease(ws.protocol == p.LEASE_PROTOCOL, welcome, hello_sent)
        for task_id in welcome.dropped:  # the server no longer counts these as ours
            self.queued.pop(task_id, None)
            self.returning.pop(task_id, None)
            job = self.jobs.get(task_id)
            if job is not None and job.task is not None:
                job.stopped = True
                job.task.kill()
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

    async def _send(self, frame: Any) -> bool:
        ws = self._ws
        if ws is None or ws.closed:
            return False
        async with self._send_lock:
            try:
                await ws.send_str(p.encode(frame))
            except (ConnectionResetError, RuntimeError, aiohttp.ClientError):
                return False
        return True

    async def _send_report(self, report: p.Finished) -> None:
        self._report_sent_at[report.task] = time.monotonic()
        await self._send(report)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._beat_s)
            await self._heartbeat_once()
            if self.containment is not None:
                self.containment.sweep()  # what ended attempts left behind (subreaper)

    async def _heartbeat_once(self) -> None:
        # Numbered (and so answered) only when the server takes part in the lease.
        seq = None if self._lease is None else self._beats.sent(time.monotonic())
        await self._send(p.Heartbeat(draining=self._stopping.is_set(), seq=seq))

    # --- the lease ---------------------------------------------------------------

    def _start_lease(self, supported: bool, welcome: p.Welcome, hello_sent: float) -> None:
        """A welcome: the server heard the hello sent at ``hello_sent``."""
        self._beats.clear()  # answers to the old connection's heartbeats cannot come
        self._report_sent_at.clear()
        self._claim_sent_at = None
        new_terms = terms(welcome.worker_timeout_s, welcome.heartbeat_interval_s)
        self._beat_s = new_terms.heartbeat_s
        if not supported:
            if self._lease is not None or self._sidecar_deadline is None:
                log.warning("the server does not answer heartbeats: running without a lease")
            self._lease = None
            self._sidecar_deadline = None
            if self._reaper is not None:
                self._reaper.set_lease(None)
            return
        if self._lease is None or self._lease.terms != new_terms:
            self._lease = Lease(new_terms)
            self._sidecar_deadline = None  # the new terms may end it sooner: tell the sidecar
            log.info(
                "lease: %.2f s from each answered frame (SIGTERM), SIGKILL %.2f s later; "
                "heartbeat every %.2f s",
                new_terms.length_s,
                new_terms.grace_s,
                new_terms.heartbeat_s,
            )
        self._renew(hello_sent)

    def _renew(self, sent_at: float | None) -> None:
        """The server answered a frame sent at ``sent_at``."""
        lease = self._lease
        if lease is None or sent_at is None or not lease.renew(sent_at):
            return
        self._tell_sidecar(lease)
        if self._lease_timer is None:
            self._arm_lease_timer(lease)

    def _tell_sidecar(self, lease: Lease) -> None:
        deadline = lease.deadline
        assert deadline is not None
        # Not on every answer (a busy worker gets hundreds a second): the sidecar's
        # deadline may lag by a quarter heartbeat, which only makes it stricter.
        last = self._sidecar_deadline
        if last is not None and deadline - last < lease.terms.heartbeat_s / 4:
            return
        self._sidecar_deadline = deadline
        if self._reaper is not None:
            self._reaper.set_lease(deadline, lease.kill_at)

    def _arm_lease_timer(self, lease: Lease) -> None:
        assert lease.deadline is not None
        delay = max(0.0, lease.deadline - time.monotonic())
        self._lease_timer = asyncio.get_running_loop().call_later(delay, self._on_lease_timer)

    def _on_lease_timer(self) -> None:
        self._lease_timer = None
        lease = self._lease
        if lease is None or lease.deadline is None:
            return
        now = time.monotonic()
        if not lease.lapsed(now):  # renewed since the timer was set
            self._arm_lease_timer(lease)
            return
        self._fence(lease, now)  # the next renewal arms the timer again

    def _fence(self, lease: Lease, now: float) -> None:
        """The lease lapsed: stop every task before the server gives it to another."""
        jobs = [job for job in self.jobs.values() if not job.fenced]
        if not jobs:
            return  # nothing runs: nothing to fence
        assert lease.deadline is not None and lease.kill_at is not None
        log.error(
            "lease lapsed %.2f s ago (no answer from the server for %.2f s): stopping %s",
            now - lease.deadline,
            now - lease.deadline + lease.terms.length_s,
            ", ".join(job.attempt.task for job in jobs),
        )
        grace = max(0.0, lease.kill_at - now)
        for job in jobs:
            job.fenced = job.stopped = True
            self.fenced += 1
            self._spawn(self._terminate(job, grace))

    def lease_terms(self) -> Terms | None:
        return None if self._lease is None else self._lease.terms

    async def _handle(self, frame: Any) -> None:
        if isinstance(frame, p.HeartbeatAck):
            self._renew(self._beats.acked(frame.seq))
        elif isinstance(frame, p.Assigned):
            self._renew(self._claim_sent_at)
            self._claim_sent_at = None
            self._queue_empty = (
                not frame.attempts and not self.jobs and not self.queued and self._claim_settled
            )
            for attempt in frame.attempts:
                if attempt.queued and self._stopping.is_set():
                    await self._hand_back(attempt)  # claimed just before the stop
                elif attempt.queued:
                    self.queued[attempt.task] = attempt
                else:
                    await self._start(attempt)
            await self._start_queued()
            self._claiming = False
            # Claims fill the worker (issue 11): one answer stops at the claim's
            # limit (or the server's scan window) even when cores are still free,
            # so an answer that handed out anything is followed at once by
            # another claim; ``_claim`` itself skips it when no core is left. An
            # empty answer ends the round: nothing else fits now, and the next
            # claim waits for a finished task or a work_available push.
            if self._claim_again or frame.attempts:
                self._claim_again = False
                await self._claim()
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
            if self.config.burst and not self.jobs and not self.unreported:
                await self._claim()  # everything is on record: is anything left?
        elif isinstance(frame, p.Refused):
            self._renew(self._report_sent_at.pop(frame.task, None))
            log.warning("server refused a report on %s: %s", frame.task, frame.message)
            self.unreported.pop(frame.task, None)
            self.returning.pop(frame.task, None)
            self.queued.pop(frame.task, None)
            job = self.jobs.get(frame.task)
            if job is not None and frame.code == 409 and job.task is not None:
                job.stopped = True  # superseded: the server gave this task to someone else
                job.task.kill()
            if self.config.burst and not self.jobs and not self.unreported:
                await self._claim()

    # --- claims and jobs -------------------------------------------------------

    def remaining_s(self) -> float | None:
        """What is left of the worker's --time-limit; None: it has none."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def free(self) -> Resources:
        """The free share a claim offers (``banyan.resources.free_share``)."""
        running = [job.request for job in self.jobs.values()]
        share = free_share(self.config.capacity, running, gpus=len(self._free_gpus))
        return share.as_resources()

    async def _claim(self) -> None:
        if self._stopping.is_set():
            return
        if self._claiming:
            self._claim_again = True
            return
        free = self.free()
        room = max(0, self.config.prefetch - len(self.queued))
        full = Amounts.of(free).no_cores_left and self.jobs
        # Full: refill only once the queue is down to half, so that one claim
        # (one commit on the server) serves several tasks.
        if full and len(self.queued) > self.config.prefetch // 2:
            return
        self._claiming = True
        self._claim_settled = not self.jobs and not self.unreported and not self.queued
        self._claim_sent_at = time.monotonic()
        # Queued attempts only once no core is free: while one is, a claim hands
        # out what starts now (a queued one would cost a ``started`` report more).
        claim = p.Claim(
            free=free,
            limit=self.config.claim_limit,
            prefetch=room if full else 0,
            remaining_s=self.remaining_s(),
        )
        if not await self._send(claim):
            self._claiming = False

    async def _start_queued(self) -> None:
        """Start queued attempts while the first in line fits what is free."""
        while self.queued and not self._stopping.is_set():
            task_id, attempt = next(iter(self.queued.items()))
            request = Amounts.of(Resources.model_validate(attempt.requested_resources))
            if self.jobs and not request.fits_in(Amounts.of(self.free())):
                return
            del self.queued[task_id]
            if self._lease is not None and self._lease.lapsed(time.monotonic()):
                await self._hand_back(attempt)  # the server may count us lost: never start it
                continue
            remaining = self.remaining_s()
            limit = attempt.time_limit
            if limit is not None and remaining is not None and limit > remaining:
                await self._hand_back(attempt)  # no longer fits this worker's lifetime
                continue
            await self._start(attempt)
            await self._send(
                p.Started(task=task_id, execution_key=attempt.execution_key, time=time.time())
            )

    async def _hand_back(self, attempt: p.AssignedAttempt) -> None:
        returned = p.Returned(task=attempt.task, execution_key=attempt.execution_key)
        self.returning[attempt.task] = returned
        await self._send(returned)

    async def _return_queued(self) -> None:
        """Stopping: every queued attempt goes back to the server (uncounted)."""
        for attempt in list(self.queued.values()):
            del self.queued[attempt.task]
            await self._hand_back(attempt)
        await self._maybe_leave()

    async def _start(self, attempt: p.AssignedAttempt) -> None:
        if self._lease is not None and self._lease.lapsed(time.monotonic()):
            # The server may already count it as abandoned: never start it then.
            log.error("task %s not started: the lease has lapsed", attempt.task)
            report = p.Finished(
                task=attempt.task,
                execution_key=attempt.execution_key,
                exit_status=STOPPED,
                usage={"error": NOT_STARTED},
            )
            self.unreported[attempt.task] = report
            await self._send_report(report)
            return
        log.debug("claimed task %s (attempt %d)", attempt.task, attempt.attempt)
        request = Resources.model_validate(attempt.requested_resources)
        gpus = self._free_gpus[: request.gpu_count]
        del self._free_gpus[: request.gpu_count]
        job = Job(attempt=attempt, request=request, gpus=gpus)
        self.jobs[attempt.task] = job
        spec = runner.TaskSpec(
            task_id=attempt.task,
            attempt=attempt.attempt,
            command=attempt.command or "true",
            env=attempt.env,
            cwd=attempt.cwd,
            max_termination_time_s=attempt.max_termination_time,
            gpus=gpus,
            extra_env=self._task_env,
        )
        job.task = await runner.start(
            spec,
            on_output=lambda stream, chunk: self._on_output(job, stream, chunk),
            max_log_bytes=self.config.max_log_bytes,
            reaper=self._reaper,
            containment=self.containment,
            memory_limit_bytes=int(request.memory),
        )
        self._arm_time_limit(job)
        self._spawn(self._follow(job))

    # --- wall-time limits (a path of its own beside cancel and stop) ------------

    def _arm_time_limit(self, job: Job) -> None:
        """Stop the task at its ``time_limit``, counted from its start."""
        limit = job.attempt.time_limit
        if limit is not None:
            loop = asyncio.get_running_loop()
            job.limit_timer = loop.call_later(limit, self._on_time_limit, job)

    def _on_time_limit(self, job: Job) -> None:
        job.limit_timer = None
        if job.task is None or job.task.done or self.jobs.get(job.attempt.task) is not job:
            return
        log.info("task %s reached its time limit: stopping it", job.attempt.task)
        job.timed_out = True
        self._spawn(self._terminate(job))  # SIGTERM, then SIGKILL after max_termination_time

    async def _follow(self, job: Job) -> None:
        assert job.task is not None
        waiter = asyncio.ensure_future(job.task.wait())
        while True:
            done, _ = await asyncio.wait({waiter}, timeout=self.config.usage_interval_s)
            if done:
                break
            sample = job.task.sample()
            await self._send(
                p.Usage(
                    task=job.attempt.task,
                    execution_key=job.attempt.execution_key,
                    time=sample.time,
                    resident_memory_bytes=sample.rss_bytes,
                    cpu_percent=sample.cpu_percent,
                )
            )
        result = waiter.result()
        if job.limit_timer is not None:
            job.limit_timer.cancel()
        await self._flush(job)
        if self._fenced_by_sidecar(job, result.exit_status):
            job.fenced = job.stopped = True
        status = result.exit_status
        if job.stopped:
            status = STOPPED
        elif job.cancelled:
            status = "cancelled"
        elif job.timed_out and status != SUCCESS:  # it may have ended on its own just then
            status = TIME_LIMIT_STATUS
        usage: dict[str, Any] = dict(result.usage)
        if result.error:
            usage["error"] = result.error
        elif job.fenced:
            usage["error"] = FENCED
        log.debug("task %s ended: %s", job.attempt.task, status)
        report = p.Finished(
            task=job.attempt.task,
            execution_key=job.attempt.execution_key,
            exit_status=status,
            exit_code=result.exit_code,
            usage=usage,
        )
        self.jobs.pop(job.attempt.task, None)
        self._free_gpus.extend(job.gpus)
        self.ran += 1
        await self._start_queued()  # the next one starts before this one is reported
        if not job.forgotten:  # kept until the server accepts or refuses it
            self.unreported[job.attempt.task] = report
            await self._send_report(report)
        if not await self._maybe_leave():
            await self._claim()

    def _fenced_by_sidecar(self, job: Job, exit_status: str) -> bool:
        """Whether the sidecar stopped this task for a lapsed lease. Its deadline
        can come before this process's own lease timer (it is told only of
        renewals a quarter heartbeat apart, and it keeps running while this
        process is frozen), so the task may end before :meth:`_fence` marks it;
        the sidecar's notice, written before its signal, is already there.
        A task that still succeeded keeps its success."""
        if job.fenced or self._reaper is None or job.task is None or job.task.pgid is None:
            return False
        fenced = self._reaper.fenced(job.task.pgid)
        if fenced and exit_status != "success":
            log.error(
                "task %s was stopped by the reaper sidecar: the lease lapsed", job.attempt.task
            )
            return True
        return False

    async def _maybe_leave(self) -> bool:
        """Say bye and close once there is nothing left to run or report."""
        ws = self._ws
        if not self._finished() or ws is None:
            return False
        await self._send(p.Bye())
        await ws.close()
        return True

    async def _terminate(self, job: Job, grace_s: float | None = None) -> None:
        if job.task is not None:
            grace = job.attempt.max_termination_time if grace_s is None else grace_s
            await job.task.terminate(grace)

    # --- output and progress ---------------------------------------------------

    def _on_output(self, job: Job, stream: str, chunk: bytes) -> None:
        job.output[stream] += chunk
        if not job.flush_scheduled:
            job.flush_scheduled = True
            asyncio.get_running_loop().call_later(
                OUTPUT_FLUSH_S, lambda: self._spawn(self._flush(job))
            )

    async def _flush(self, job: Job) -> None:
        job.flush_scheduled = False
        for stream, buffer in job.output.items():
            assert stream in ("stdout", "stderr")
            if buffer:
                data = bytes(buffer[-self.config.max_log_bytes :])
                buffer.clear()
                await self._send(
                    p.Output(
                        task=job.attempt.task,
                        execution_key=job.attempt.execution_key,
                        stream=stream,
                        data=data.decode("utf-8", "replace"),
                    )
                )

    def _on_progress(self, task_id: str, percent: float | None, message: str | None) -> None:
        job = self.jobs.get(task_id)
        if job is not None:
            self._spawn(
                self._send(
                    p.Progress(
                        task=task_id,
                        execution_key=job.attempt.execution_key,
                        percent=percent,
                        message=message,
                    )
                )
            )

    def _spawn(self, coro: Any) -> None:
        self._background.spawn(coro)
