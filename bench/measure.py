"""Measuring a benchmark run: CPU of this process (the load generator), of
the whole machine and of a server over a block (:class:`Meter`), how busy
other processes keep the shared machine, percentiles, and what one disk
commit costs."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Measured(Protocol):
    """A process whose CPU can be read (a :class:`testbed.Server`)."""

    def cpu_seconds(self) -> float: ...


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy (all CPUs, all processes)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def background_cores(seconds: float = 1.0) -> float:
    """How many CPUs other processes keep busy while this one sleeps (the
    machine is shared: a figure above ~0.1 means the measurements are low)."""
    b0, c0 = busy_cpu_seconds(), client_cpu_seconds()
    time.sleep(seconds)
    return max(0.0, (busy_cpu_seconds() - b0) - (client_cpu_seconds() - c0)) / seconds


class Meter:
    """Wall time and CPU over a block: the server's, this process's (the load
    generator), and everything else on the machine ("other")."""

    def __init__(self, server: Measured) -> None:
        self.server = server
        self.wall_s = self.server_cpu_s = self.client_cpu_s = self.other_cpu_s = 0.0

    def __enter__(self) -> Meter:
        self._s0 = self.server.cpu_seconds()
        self._c0 = client_cpu_seconds()
        self._b0 = busy_cpu_seconds()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._t0
        self.server_cpu_s = self.server.cpu_seconds() - self._s0
        self.client_cpu_s = client_cpu_seconds() - self._c0
        busy = busy_cpu_seconds() - self._b0
        self.other_cpu_s = max(0.0, busy - self.server_cpu_s - self.client_cpu_s)


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks; ``p`` in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def fsync_latency(
    directory: Path, *, overwrite: bool, count: int = 200, max_s: float = 5.0
) -> float:
    """Median seconds for a 4 KiB write + fdatasync in ``directory``: what one WAL
    commit at synchronous=FULL costs the disk, at least. ``overwrite=False``
    appends (a growing WAL: the file size changes too); ``overwrite=True``
    rewrites blocks of a preallocated file (a WAL being reused after a checkpoint)."""
    path = Path(directory) / "fsync-probe"
    times: list[float] = []
    deadline = time.monotonic() + max_s
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        block = b"x" * 4096
        if overwrite:
            os.write(fd, block * count)
            os.fsync(fd)
        for i in range(count):
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            if overwrite:
                os.pwrite(fd, block, i * 4096)
            else:
                os.write(fd, block)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return percentile(times, 50)
