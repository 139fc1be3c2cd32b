"""Process inspection for the runner: resource samples of a task's process
tree (psutil) and the live members of a process group (``/proc``).

Both tolerate processes that vanish while they are being looked at: a task's
tree changes under our feet all the time, and a short-lived child that exits
mid-scan is simply not counted.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Sample:
    """One look at a task's process tree."""

    time: float  # epoch seconds
    rss_bytes: int  # sum over the tree (pages shared between processes count once per process)
    cpu_percent: float  # over the tree since the previous sample; 100 = one core busy
    process_count: int


def own_peak_rss_bytes(pid: int) -> int:
    """``VmHWM`` of ``pid``: the most memory it has held resident since its
    last exec (0 when it is gone or has no memory, e.g. a zombie)."""
    # os.open and one read: a file object costs 4 more system calls (fstat,
    # ioctl, lseek, a second read), and this runs at every task's start.
    try:
        fd = os.open(f"/proc/{pid}/status", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        status = os.read(fd, 8192)  # ~1.4 KiB
        start = status.find(b"\nVmHWM:")
        if start < 0:  # a zombie, or a kernel thread
            return 0
        return int(status[start + 7 : status.find(b"\n", start + 7)].split()[0]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return 0
    finally:
        os.close(fd)


class TreeSampler:
    """Samples the process tree rooted at ``pid`` (the task's shell).

    The peak is the largest, over the samples, of the sum of each live
    process's own high-water mark (``VmHWM``): a spike between two samples
    still counts, as long as the process that had it is alive at the next
    sample. Summing per-process peaks can overstate a tree whose processes
    peaked at different times; it never understates what was sampled, which
    is what someone sizing a memory request needs. A process that came and
    went between two samples is missed.

    CPU time of the tree is the sum over live processes of their own time plus
    the time of the children they have reaped (``children_user`` and
    ``children_system``), so a child that came and went between two samples
    still counts once it was waited for.
    """

    def __init__(self, pid: int, *, started_monotonic: float) -> None:
        self._pid = pid
        self._root: psutil.Process | None = None
        self._previous_cpu_s = 0.0
        self._previous_monotonic = started_monotonic
        self.peak_rss_bytes = 0

    def sample(self, extra_pids: Iterable[int] = ()) -> Sample:
        """Sum RSS and CPU over the tree now, and over ``extra_pids`` (the
        attempt's processes that left the tree: its cgroup's, or those the
        worker adopted); updates :attr:`peak_rss_bytes`."""
        now_epoch = time.time()
        now = time.monotonic()
        rss_bytes = 0
        peak_bytes = 0
        cpu_s = 0.0
        count = 0
        for proc in self._tree(extra_pids):
            try:
                with proc.oneshot():
                    rss = proc.memory_info().rss
                    times = proc.cpu_times()
            except psutil.Error:  # gone (or a zombie) since the tree was listed
                continue
            rss_bytes += rss
            peak_bytes += max(rss, own_peak_rss_bytes(proc.pid))
            cpu_s += times.user + times.system + times.children_user + times.children_system
            count += 1
        elapsed_s = now - self._previous_monotonic
        # The total can shrink when a process dies unreaped (its time is lost
        # with it); report no negative load and start again from the new total.
        busy_s = max(0.0, cpu_s - self._previous_cpu_s)
        cpu_percent = 100.0 * busy_s / elapsed_s if elapsed_s > 0 else 0.0
        self._previous_cpu_s = cpu_s
        self._previous_monotonic = now
        self.peak_rss_bytes = max(self.peak_rss_bytes, peak_bytes)
        return Sample(
            time=now_epoch, rss_bytes=rss_bytes, cpu_percent=cpu_percent, process_count=count
        )

    def _tree(self, extra_pids: Iterable[int] = ()) -> list[psutil.Process]:
        try:
            if self._root is None:
                # Created on first use: psutil reads the start time here, which
                # protects later calls against the pid being reused.
                self._root = psutil.Process(self._pid)
            tree = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            tree = []
        seen = {proc.pid for proc in tree}
        for pid in extra_pids:
            if pid not in seen:
                seen.add(pid)
                with contextlib.suppress(psutil.Error):
                    tree.append(psutil.Process(pid))
        return tree


def empty_sample() -> Sample:
    """What :meth:`TreeSampler.sample` would say about a tree that has gone."""
    return Sample(time=time.time(), rss_bytes=0, cpu_percent=0.0, process_count=0)


def live_group_members(pgid: int, *, exclude: int | None = None) -> list[int]:
    """Pids in process group ``pgid`` that are still running (not zombies).

    Zombies are left out on purpose: an orphan that was killed stays a zombie
    in its group until PID 1 reaps it, and some container init processes never
    do, so ``os.killpg(pgid, 0)`` alone could say "still there" forever.
    ``exclude`` is the group leader when the caller keeps it unreaped.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []  # the common case, and no /proc scan needed
    except PermissionError:
        pass  # someone in the group changed user; scan to find out
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid == exclude:
            continue
        try:
            if os.getpgid(pid) != pgid:
                continue
            with open(f"/proc/{pid}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:  # gone since listdir
            continue
        # The state letter follows the command name, which is in parentheses
        # and may itself contain spaces or ')'.
        state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
        if state not in (b"Z", b"X"):
            members.append(pid)
    return members
