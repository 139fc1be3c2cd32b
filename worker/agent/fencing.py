"""The worker agent's heartbeats and lease (worker/lease.py): every answer
from the server renews the lease by the send time of the frame it answers;
the reaper sidecar is told the deadline, and when the lease lapses the agent
stops every task before the server hands it to another worker (fencing)."""

from __future__ import annotations

import asyncio
import time

from banyan import protocol as p
from worker.agent.base import AgentBase, log
from worker.lease import Lease, Terms, terms


class Fencing(AgentBase):
    """Heartbeats and the lease, on top of the agent's state."""

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
