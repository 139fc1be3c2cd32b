"""Runs one task's command for the worker agent: spawn, capture, sample, stop.

``start(spec)`` runs ``/bin/sh -c COMMAND`` in its own session (so its process
group is the task), stdin from /dev/null, stdout and stderr on two pipes read by
the event loop, and returns a :class:`RunningTask`; ``await task.wait()`` gives
the :class:`Result` with the SPEC §3 exit status and the usage summary.

Spawning: ``os.posix_spawn`` (vfork + exec in glibc; ``subprocess.Popen``
for a task with a ``cwd``, see :func:`worker.task_process.spawn_shell`) + ``os.pidfd_open`` +
``loop.add_reader`` on the pidfd and both pipes, then ``os.wait4`` for the
status and rusage. No thread per child, no asyncio transports.
bench/spawn.py (2,000 spawns a round, 3 rounds, 16 in flight, stdout+stderr
piped, Python 3.11, this 2-core machine shared with other jobs, load ~3):

    one process                       tasks/s best/median   parent CPU µs/task
    asyncio         /bin/sh -c true        696 /  635             518
    popen+pidfd     /bin/sh -c true       1417 / 1019             225
    popen+pidfd     true                  1452 / 1015             246
    + pdeathsig     /bin/sh -c true        282 /  200            1153
    posix_spawn     /bin/sh -c true       1188 / 1006             235
    runner.start()  "true" (sh -c)        1102 /  835             262
    two processes at once (sum)
    subprocess.run(['true'])              2477 / 2440
    asyncio         /bin/sh -c true       1614 / 1407
    popen+pidfd     /bin/sh -c true       2379 / 2031
    runner.start()  "true" (sh -c)        2225 / 2018

asyncio's API costs twice the parent CPU (a watcher thread per child in 3.11).
``PR_SET_PDEATHSIG`` needs a ``preexec_fn``, which stops CPython from using
vfork and costs ~5x the parent CPU, so it is not used: :mod:`worker.reaper`
kills the groups of a worker that dies. ``posix_spawn`` was measured no
faster in that table, but in the worker's own loop (issue 12, py-spy before
and after, 2026-12-07) it costs ~60 µs of parent CPU per task against
~130 µs for Popen; it has no ``cwd`` in 3.11, hence Popen for those.

Containment (:mod:`worker.containment`): besides its process group, each
attempt has a :class:`~worker.containment.Box` (its own cgroup v2, or the
worker as child subreaper) that finds the processes that left the group
(``setsid``, double forks, daemons). Every signal to the group also goes to
them, "gone" means the group *and* the box are empty, and when the shell ends
on its own whatever is left in either is SIGKILLed, as Slurm does at the end
of a job.

Process-group safety: a group is only ever signalled while its leader is
unreaped (alive or a zombie), because a zombie keeps its pid, and so the pgid,
from being reused. When the leader exits on its own, whatever is left of its
group is SIGKILLed before the leader is reaped (a batch task owns its group; a
background child does not outlive it).
"""

from __future__ import annotations

import asyncio
import logging
import signal

from worker.box import Box, Containment
from worker.reaper import Reaper
from worker.spec import Result, TaskSpec, exit_status_of, signal_name
from worker.task_process import STREAMS, OutputCallback, TaskProcess
from worker.usage import Sample, TreeSampler, empty_sample, live_group_members

__all__ = [
    "Result",
    "RunningTask",
    "Sample",
    "TaskSpec",
    "exit_status_of",
    "signal_name",
    "start",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_LOG_BYTES = 1 << 20
# After SIGKILL, how long terminate() waits for the group to vanish (a
# process in uninterruptible sleep dies only when its I/O returns).
KILL_CONFIRM_TIMEOUT_S = 10.0
GROUP_POLL_FIRST_S = 0.002
GROUP_POLL_MAX_S = 0.1


class RunningTask(TaskProcess):
    """One started command. Create with :func:`start`; use from its event loop only.

    The process, its pipes and its end are :class:`~worker.task_process.TaskProcess`;
    this adds what the agent calls.
    """

    async def wait(self) -> Result:
        """The result, once the leader is reaped and both streams are at EOF."""
        return await asyncio.shield(self._done)

    @property
    def done(self) -> bool:
        return self._done.done()

    def tail(self, stream: str) -> bytes:
        """The last ``max_log_bytes`` of ``"stdout"`` or ``"stderr"``."""
        return self._tails[STREAMS.index(stream)].value()

    def dropped_bytes(self, stream: str) -> int:
        """How many bytes of ``stream`` came before :meth:`tail` and were dropped."""
        return self._tails[STREAMS.index(stream)].dropped_bytes

    def sample(self) -> Sample:
        """RSS and CPU of the whole process tree now (zeros once it has ended)."""
        if self.pid is None or self._reaped:
            return empty_sample()
        if self._sampler is None:
            self._sampler = TreeSampler(self.pid, started_monotonic=self._started_monotonic)
        # What left the tree (setsid, daemons) counts too; the subreaper box
        # also remembers what it sees here (pid + start time).
        return self._sampler.sample(extra_pids=self.box.members())

    def kill(self) -> None:
        """SIGKILL the whole group and box now; :meth:`wait` then reports the signal."""
        self._signal_group(signal.SIGKILL)
        if not self._reaped:
            self.box.kill()

    async def terminate(self, grace_s: float | None = None) -> None:
        """SIGTERM the group, wait up to ``grace_s`` for it to be gone, then SIGKILL.

        When it returns, no process of the group is running, and :meth:`wait`
        reports ``"cancelled"`` (unless the command had already ended).
        """
        if self.pid is None or self._reaped:
            return
        if self._terminator is None:
            self._cancel_requested = True
            self._terminating = True
            grace = self.spec.max_termination_time_s if grace_s is None else grace_s
            self._terminator = self._loop.create_task(self._terminate(grace))
        await asyncio.shield(self._terminator)

    async def _terminate(self, grace_s: float) -> None:
        assert self.pgid is not None
        for signum in (signal.SIGTERM, signal.SIGCONT):  # a stopped process acts on it once resumed
            self._signal_group(signum)
            self.box.signal(signum)
        if not await self._group_gone(self._loop.time() + grace_s):
            self._signal_group(signal.SIGKILL)
            self.box.kill()
            if not await self._group_gone(self._loop.time() + KILL_CONFIRM_TIMEOUT_S):
                logger.error(
                    "task %s: process group %d survived SIGKILL for %.0f s",
                    self.spec.task_id,
                    self.pgid,
                    KILL_CONFIRM_TIMEOUT_S,
                )
        self._terminating = False
        if self._leader_exited:
            self._reap()
        # else: the leader is stuck in the kernel; _on_leader_exit reaps it later.

    async def _group_gone(self, deadline: float) -> bool:
        """Wait until the leader has exited and no other member is running."""
        assert self.pgid is not None
        if not self._leader_exited:
            if self._leader_exit_waiter is None:
                self._leader_exit_waiter = self._loop.create_future()
            timeout = max(0.0, deadline - self._loop.time())
            await asyncio.wait([self._leader_exit_waiter], timeout=timeout)
            if not self._leader_exited:
                return False
        delay = GROUP_POLL_FIRST_S
        while live_group_members(self.pgid, exclude=self.pid) or not self.box.empty():
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(delay, remaining))
            delay = min(2 * delay, GROUP_POLL_MAX_S)
        return True


async def start(
    spec: TaskSpec,
    *,
    on_output: OutputCallback | None = None,
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
    reaper: Reaper | None = None,
    containment: Containment | None = None,
    memory_limit_bytes: int = 0,
) -> RunningTask:
    """Start ``spec.command``; never raises for a command that cannot start.

    ``on_output(stream, chunk)`` is called from the event loop with each chunk
    of ``"stdout"`` or ``"stderr"`` as it arrives; it must not block. With a
    ``reaper``, the task's group is killed if the worker process dies. With a
    ``containment``, the attempt gets a box of its own (a cgroup, or tracking
    as subreaper) that also holds what leaves the group; ``memory_limit_bytes``
    is its hard limit where the containment enforces one (0: none).
    """
    box = (
        Box()
        if containment is None
        else containment.open(spec.task_id, spec.attempt, memory_limit_bytes=memory_limit_bytes)
    )
    task = RunningTask(
        spec, on_output=on_output, max_log_bytes=max_log_bytes, reaper=reaper, box=box
    )
    task._spawn()
    return task
