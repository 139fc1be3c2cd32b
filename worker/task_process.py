"""A started task's process, as the runner sees it: spawn ``/bin/sh -c`` in its
own session (inside the attempt's box), read both pipes from the event loop,
reap the leader by its pidfd (killing what is left of its group first), and
build the :class:`~worker.spec.Result` with its usage once the leader is
reaped and both pipes are at EOF.

:class:`TaskProcess` is the lower half of :class:`worker.runner.RunningTask`,
which adds what the agent calls (wait, sample, kill, terminate); the design
notes (spawning, containment, process-group safety) are in ``worker.runner``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable

from worker.box import Box
from worker.reaper import Reaper
from worker.spec import Result, Tail, TaskSpec, child_env, exit_status_of
from worker.usage import TreeSampler, own_peak_rss_bytes

logger = logging.getLogger("worker.runner")

STREAMS = ("stdout", "stderr")
SHELL = "/bin/sh"
READ_CHUNK_BYTES = 64 * 1024
# After the leader is reaped, how long a pipe may stay open: only a process
# that left the group (setsid, daemonised) can still hold it.
PIPE_DRAIN_TIMEOUT_S = 2.0

OutputCallback = Callable[[str, bytes], None]
# Python ignores these, and ignored signals survive exec: a task gets them back
# at their defaults (the set Popen's restore_signals restores).
RESTORED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name)
)


_devnull_fd: int | None = None


def _devnull() -> int:
    """One /dev/null descriptor for every child's stdin, opened once."""
    global _devnull_fd
    if _devnull_fd is None:
        _devnull_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _devnull_fd


_inherited_fds: tuple[int, ...] | None = None
# This process's own peak resident memory (KiB), as last looked up (``_rusage_peak``).
_worker_peak_kib = 0


def _inheritable_fds() -> tuple[int, ...]:
    """Descriptors above 2 that a child of this process would inherit: only
    those it was itself started with (a parent's leak: Python opens every
    descriptor close-on-exec, PEP 446), so they are looked up once."""
    global _inherited_fds
    if _inherited_fds is None:
        found = []
        with contextlib.suppress(OSError):
            for name in os.listdir("/proc/self/fd"):
                fd = int(name)
                with contextlib.suppress(OSError):  # the listing's own fd is closed now
                    if fd > 2 and os.get_inheritable(fd):
                        found.append(fd)
        _inherited_fds = tuple(sorted(found))
    return _inherited_fds


def spawn_shell(spec: TaskSpec, *, stdout: int, stderr: int) -> int:
    """Start ``/bin/sh -c COMMAND`` in a session (and group) of its own, stdin
    from /dev/null, ``stdout``/``stderr`` on the given descriptors; its pid.

    ``os.posix_spawn`` (glibc: clone with CLONE_VM|CLONE_VFORK, then exec)
    costs the worker ~40 % less CPU than ``subprocess.Popen``, which does the
    same vfork + exec behind much more Python (bench/spawn.py). It has no
    chdir action, so a task with a ``cwd`` goes through Popen. Both give the
    child the same state: only fds 0-2 (Popen's ``close_fds``; here every
    descriptor Python opens is close-on-exec, PEP 446, and those the worker
    was started with are closed), and SIGPIPE and SIGXFSZ, which Python
    ignores, back at their defaults (Popen's ``restore_signals``).
    """
    argv = [SHELL, "-c", spec.command]
    env = child_env(spec)
    if spec.cwd is None:
        return os.posix_spawn(
            SHELL,
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, _devnull(), 0),
                (os.POSIX_SPAWN_DUP2, stdout, 1),
                (os.POSIX_SPAWN_DUP2, stderr, 2),
                *((os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()),
            ],
            setsid=True,  # its own session and group: pgid == pid
            setsigdef=RESTORED_SIGNALS,
        )
    popen = subprocess.Popen(
        argv,
        stdin=_devnull(),
        stdout=stdout,
        stderr=stderr,
        cwd=spec.cwd,
        env=env,
        start_new_session=True,
    )
    # The runner reaps it by its pid (os.wait4); a Popen left with no
    # returncode would warn when collected and wait for the pid itself.
    popen.returncode = 0
    return popen.pid


class TaskProcess:
    """One started command's process, pipes and end (see :class:`worker.runner.RunningTask`)."""

    def __init__(
        self,
        spec: TaskSpec,
        *,
        on_output: OutputCallback | None,
        max_log_bytes: int,
        reaper: Reaper | None,
        box: Box,
    ) -> None:
        self.spec = spec
        self.box = box
        self.pid: int | None = None  # None when the command could not start
        self.pgid: int | None = None
        self.started_at = time.time()  # epoch seconds
        self._loop = asyncio.get_running_loop()
        self._started_monotonic = time.monotonic()
        self._on_output = on_output
        self._reaper = reaper
        self._tails = (Tail(max_log_bytes), Tail(max_log_bytes))
        self._fds: list[int | None] = [None, None]
        self._pidfd: int | None = None
        self._sampler: TreeSampler | None = None
        self._first_peak_rss_bytes = 0  # the shell's, just after its exec
        self._leader_exited = False
        self._leader_exit_waiter: asyncio.Future[None] | None = None
        self._reaped = False
        self._wait_status: int | None = None
        self._rusage: resource.struct_rusage | None = None
        self._ended_monotonic: float | None = None
        self._cancel_requested = False
        self._terminating = False
        self._terminator: asyncio.Task[None] | None = None
        self._drain_timer: asyncio.TimerHandle | None = None
        self._done: asyncio.Future[Result] = self._loop.create_future()

    # --- start --------------------------------------------------------------------

    def _spawn(self) -> None:
        out_r, out_w = os.pipe()  # both ends close-on-exec, as every fd Python makes
        err_r, err_w = os.pipe()
        try:
            with self.box.spawning():  # the shell starts inside the attempt's box
                pid = spawn_shell(self.spec, stdout=out_w, stderr=err_w)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            self.box.close()
            os.close(out_r)
            os.close(err_r)
            self._fail_to_start(f"cannot start the command: {exc}")
            return
        finally:
            os.close(out_w)
            os.close(err_w)
        self.pid = self.pgid = pid
        self.box.started(self.pid)
        # One /proc read (~10 µs), so a task too short for any sample still
        # gets a true figure: the shell's own, after exec (0 if it is gone).
        self._first_peak_rss_bytes = own_peak_rss_bytes(self.pid)
        if self._reaper is not None:
            self._reaper.register(self.pgid, self.box.reaper_tag())
        self._fds = [out_r, err_r]
        for index, fd in enumerate((out_r, err_r)):
            os.set_blocking(fd, False)  # the read ends only; the child's stay blocking
            self._loop.add_reader(fd, self._on_readable, index)
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except OSError as exc:  # out of descriptors: do not leave it running unwatched
            self._signal_group(signal.SIGKILL)
            self.box.kill()
            self.box.close()
            if self._reaper is not None:
                self._reaper.unregister(self.pgid)
            os.waitpid(self.pid, 0)  # SIGKILLed: returns at once
            self._reaped = True
            self._close_streams()
            self._fail_to_start(f"cannot watch the command: {exc}")
            return
        self._loop.add_reader(self._pidfd, self._on_leader_exit)

    def _fail_to_start(self, message: str) -> None:
        logger.warning("task %s attempt %d: %s", self.spec.task_id, self.spec.attempt, message)
        self._done.set_result(
            Result(
                exit_status="failure",
                exit_code=None,
                usage=self._usage(),
                error=message,
            )
        )

    # --- output -------------------------------------------------------------------

    def _on_readable(self, index: int) -> None:
        fd = self._fds[index]
        assert fd is not None
        try:
            chunk = os.read(fd, READ_CHUNK_BYTES)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close_stream(index)
            self._maybe_finish()
            return
        self._tails[index].add(chunk)
        if self._on_output is not None:
            try:
                self._on_output(STREAMS[index], chunk)
            except Exception:  # a broken consumer must not stop the capture
                logger.exception("on_output failed for task %s", self.spec.task_id)

    def _close_stream(self, index: int) -> None:
        fd = self._fds[index]
        if fd is not None:
            self._loop.remove_reader(fd)
            os.close(fd)
            self._fds[index] = None

    def _close_streams(self) -> None:
        for index in range(len(STREAMS)):
            self._close_stream(index)

    def _on_drain_timeout(self) -> None:
        """A process outside the group still holds a pipe: take what is there, stop."""
        self._drain_timer = None
        for index, fd in enumerate(self._fds):
            if fd is None:
                continue
            logger.warning(
                "task %s: %s still open %.0f s after exit (a process left the group); closing",
                self.spec.task_id,
                STREAMS[index],
                PIPE_DRAIN_TIMEOUT_S,
            )
            for _ in range(16):  # what the pipe holds (64 KiB by default), bounded
                if self._fds[index] is None:
                    break
                self._on_readable(index)
            self._close_stream(index)
        self._maybe_finish()

    # --- exit ---------------------------------------------------------------------

    def _on_leader_exit(self) -> None:
        assert self._pidfd is not None
        self._loop.remove_reader(self._pidfd)  # level-triggered: fires until closed
        self._leader_exited = True
        if self._leader_exit_waiter is not None and not self._leader_exit_waiter.done():
            self._leader_exit_waiter.set_result(None)
        if not self._terminating:  # terminate() reaps once the whole group is gone
            self._reap()

    def _reap(self) -> None:
        """Kill what is left of the group, then collect the (zombie) leader."""
        assert self.pid is not None and self.pgid is not None
        if self._reaped:
            return
        self._signal_group(signal.SIGKILL)  # safe: the zombie leader holds the pgid
        self.box.kill()  # what left the group: leftovers die with the task, as in Slurm
        if self._reaper is not None:
            self._reaper.unregister(self.pgid)  # before the pid can be reused
        try:
            _, status, self._rusage = os.wait4(self.pid, 0)  # it has exited: no blocking
        except ChildProcessError:  # someone else called waitpid(-1) and took it
            status = None
        self._reaped = True
        self._ended_monotonic = time.monotonic()
        self._wait_status = status
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if any(fd is not None for fd in self._fds):
            self._drain_timer = self._loop.call_later(PIPE_DRAIN_TIMEOUT_S, self._on_drain_timeout)
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if not self._reaped or self._done.done() or any(fd is not None for fd in self._fds):
            return
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        if self._wait_status is None:
            exit_status, exit_code = "failure", None
            error: str | None = "the exit status was collected by another part of the worker"
        else:
            exit_status, exit_code = exit_status_of(self._wait_status)
            error = None
        if self._cancel_requested:
            exit_status = "cancelled"
        usage = self._usage()
        self.box.close()
        self._done.set_result(Result(exit_status, exit_code, usage, error))

    def _usage(self) -> dict[str, float]:
        """``peak_rss_bytes`` (absent when the task ended before anything could
        be measured), ``cpu_user_s``, ``cpu_system_s``, ``wall_s``."""
        wall_s = (self._ended_monotonic or time.monotonic()) - self._started_monotonic
        rusage = self._rusage
        usage: dict[str, float] = {
            # CPU times are the shell's and those of every child it waited for.
            "cpu_user_s": 0.0 if rusage is None else rusage.ru_utime,
            "cpu_system_s": 0.0 if rusage is None else rusage.ru_stime,
            "wall_s": wall_s,
        }
        sampled_peak = self._sampler.peak_rss_bytes if self._sampler else 0
        # The kernel's own account of the attempt's cgroup, when there is one,
        # is exact where samples can miss a spike or a short-lived process.
        peak_rss_bytes = self.box.peak_memory_bytes() or max(
            self._first_peak_rss_bytes, sampled_peak, self._rusage_peak()
        )
        if peak_rss_bytes > 0:
            usage["peak_rss_bytes"] = peak_rss_bytes
        return usage

    def _rusage_peak(self) -> int:
        """The tree's peak from rusage, when rusage can tell it; else 0.

        The shell is vforked: until its exec it runs on the worker's memory,
        and exec folds that memory's high-water mark into the shell's
        ``ru_maxrss`` (a 3 MiB task showed the worker's 49 MiB). So
        ``ru_maxrss`` is the larger of the worker's own peak and the task's:
        above the worker's peak it is the task's, exactly, sampled or not;
        at or below it, it says nothing and the samples must do.
        """
        global _worker_peak_kib
        if self._rusage is None:
            return 0
        task_or_worker = self._rusage.ru_maxrss  # Linux: KiB
        # The worker's peak only grows: while the figure is at or below the
        # last one looked up, it says nothing, and the lookup is spared.
        if task_or_worker <= _worker_peak_kib:
            return 0
        _worker_peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return task_or_worker * 1024 if task_or_worker > _worker_peak_kib else 0

    def _signal_group(self, signum: int) -> None:
        # Never once the leader is reaped: the pgid may then belong to a stranger.
        if self.pgid is None or self._reaped:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signum)
