"""The worker agent's state and what every layer of it uses: sending a frame,
spawning a supervised side task, what is free, what is left of its lifetime,
and whether it is done (idle, and stopping or out of work in burst mode).

The layers (``fencing``, ``jobs``, ``slots``, ``session``) each add one
concern on top of :class:`AgentBase`; the two methods a lower layer calls in
a higher one (``_claim`` and ``_start_queued``, in ``slots``) are declared
here, abstract.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from typing import Any

import aiohttp

from banyan import protocol as p
from banyan.constants import HEARTBEAT_INTERVAL_S, SERVER_TIMEOUT_S
from banyan.resources import Amounts, Resources, free_share
from banyan.supervise import SideTasks
from worker import containment
from worker.agent.config import EXIT_OK, Job, WorkerConfig, path_with_banyan
from worker.lease import Beats, Lease
from worker.progress import ENV_SOCKET, ProgressListener
from worker.reaper import Reaper
from worker.servers import Servers

log = logging.getLogger("worker.agent")


class AgentBase(abc.ABC):
    """The state the agent's layers share, and the helpers they all use."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.servers = Servers(config.connection)  # several: failover (worker/servers.py)
        self.jobs: dict[str, Job] = {}
        self.unreported: dict[str, p.Finished] = {}
        # Prefetch: assigned attempts not started yet (in the order handed out),
        # and those handed back, until the server accepts or refuses the return.
        self.queued: dict[str, p.AssignedAttempt] = {}
        self.returning: dict[str, p.Returned] = {}
        # ``started`` frames of queued attempts that began here, kept until the
        # attempt's final report is answered: sent again after a reconnect, as
        # one sent just before the server died may never have been recorded.
        self.started: dict[str, p.Started] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._send_lock = asyncio.Lock()
        # The server reads ``batch`` frames (``protocol.BATCH_PROTOCOL``): what
        # is sent in one turn of the event loop (a task's ``started``,
        # ``finished`` and the refill ``claim``) goes out as one message.
        self._batching = False
        self._outbox: list[Any] = []
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
        self._task_env = {ENV_SOCKET: str(self._progress.path), "PATH": path_with_banyan()}
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

    @property
    def reaper(self) -> Reaper | None:
        """The sidecar that kills this worker's tasks if it dies or its lease lapses."""
        return self._reaper

    def _finished(self) -> bool:
        # Never while a claim is in flight: its answer may hand this worker tasks.
        idle = not self.jobs and not self.unreported and not self._claiming
        idle = idle and not self.queued and not self.returning
        return idle and (self._stopping.is_set() or (self.config.burst and self._queue_empty))

    def remaining_s(self) -> float | None:
        """What is left of the worker's --time-limit; None: it has none."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def free_amounts(self) -> Amounts:
        """What is free now (``banyan.resources.free_share``), as plain numbers."""
        running = [job.request for job in self.jobs.values()]
        return free_share(self.config.capacity, running, gpus=len(self._free_gpus))

    def free(self) -> Resources:
        """The free share a claim offers."""
        return self.free_amounts().as_resources()

    async def _send(self, frame: Any) -> bool:
        """Send ``frame`` (batching: add it to this turn's message); False when
        the connection is down. A batched frame that cannot be sent once its
        turn ends is lost with the connection, like any send that fails: what
        must arrive is kept and sent again after the reconnect."""
        ws = self._ws
        if ws is None or ws.closed:
            return False
        if self._batching:
            self._outbox.append(frame)
            if self._send_lock.locked():
                # A send is waiting for the socket to drain: wait with it, as
                # an unbatched send would (the outbox must not grow unbounded).
                await self._send_outbox()
            elif len(self._outbox) == 1:  # the first of this turn: send them all after it
                self._spawn(self._send_outbox())
            return True
        async with self._send_lock:
            try:
                await ws.send_str(p.encode(frame))
            except (ConnectionResetError, RuntimeError, aiohttp.ClientError):
                return False
        return True

    async def _send_outbox(self) -> None:
        """Send what the outbox holds, in order (``protocol.pack``)."""
        async with self._send_lock:
            frames, self._outbox = self._outbox, []
            ws = self._ws
            if not frames or ws is None or ws.closed:
                return
            try:
                for message in p.pack(frames):
                    await ws.send_str(message)
            except (ConnectionResetError, RuntimeError, aiohttp.ClientError):
                return

    async def _send_report(self, report: p.Finished) -> None:
        self._report_sent_at[report.task] = time.monotonic()
        await self._send(report)

    async def _maybe_leave(self) -> bool:
        """Say bye and close once there is nothing left to run or report."""
        ws = self._ws
        if not self._finished() or ws is None:
            return False
        await self._send(p.Bye())
        await self._send_outbox()
        await ws.close()
        return True

    async def _terminate(self, job: Job, grace_s: float | None = None) -> None:
        if job.task is not None:
            grace = job.attempt.max_termination_time if grace_s is None else grace_s
            await job.task.terminate(grace)

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

    @abc.abstractmethod
    async def _claim(self) -> None:
        """Claim what fits (``slots``)."""

    @abc.abstractmethod
    async def _start_queued(self) -> None:
        """Start queued attempts while they fit (``slots``)."""
