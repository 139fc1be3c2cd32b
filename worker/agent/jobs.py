"""The worker agent's running attempts: start one with the runner, stop it at
its wall-time limit, follow it (usage samples, then its end report), and
forward its output in batches."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from banyan import protocol as p
from banyan.resources import Resources
from banyan.states import SUCCESS, TIME_LIMIT_STATUS
from worker import runner
from worker.agent.base import log
from worker.agent.config import FENCED, NOT_STARTED, OUTPUT_FLUSH_S, STOPPED, Job
from worker.agent.fencing import Fencing


class Jobs(Fencing):
    """Running attempts, on top of heartbeats and the lease."""

    async def _start(self, attempt: p.AssignedAttempt, request: Resources | None = None) -> None:
        """Run ``attempt`` now (``request``: its resources, when already parsed)."""
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
        if request is None:
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
