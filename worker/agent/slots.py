"""The worker agent's claims and prefetch queue: a claim offers what is free
(queued attempts only once no core is), assigned attempts start now or wait
queued, a queued one starts the moment it fits, and queued attempts go back
to the server when it asks (``give_back``) or the worker stops."""

from __future__ import annotations

import time

from banyan import protocol as p
from banyan.resources import Amounts, Resources
from worker.agent.jobs import Jobs


class Slots(Jobs):
    """Claims and the prefetch queue, on top of running attempts."""

    async def _claim(self) -> None:
        if self._stopping.is_set():
            return
        if self._claiming:
            self._claim_again = True
            return
        free = self.free_amounts()
        room = max(0, self.config.prefetch - len(self.queued))
        full = free.no_cores_left and self.jobs
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
            free=free.as_resources(),
            limit=self.config.claim_limit,
            prefetch=room if full else 0,
            remaining_s=self.remaining_s(),
        )
        if not await self._send(claim):
            self._claiming = False

    async def _on_assigned(self, frame: p.Assigned) -> None:
        """The answer to a claim: start what runs now, queue the rest."""
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

    async def _start_queued(self) -> None:
        """Start queued attempts while the first in line fits what is free."""
        while self.queued and not self._stopping.is_set():
            task_id, attempt = next(iter(self.queued.items()))
            resources = Resources.model_validate(attempt.requested_resources)
            if self.jobs and not Amounts.of(resources).fits_in(self.free_amounts()):
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
            await self._start(attempt, resources)
            started = p.Started(task=task_id, execution_key=attempt.execution_key, time=time.time())
            self.started[task_id] = started
            await self._send(started)

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
