"""Subreaper containment, where cgroup v2 is not writable (see
:mod:`worker.containment`): the worker is its tasks' child subreaper, so
what leaves a task's process group and loses its parent (``setsid cmd &`` in
a shell that ends, a daemon's double fork) becomes the worker's *adopted*
child instead of PID 1's.

An attempt's processes are its shell's tree plus the adopted children (and
their trees) that belong to it: seen in its tree before (pid + start time, so
a reused pid is never mistaken for it) or carrying its ``BANYAN_TASK_ID`` and
``BANYAN_ATTEMPT`` in their environment. An adopted child that belongs to no
running attempt is a leftover of an ended one and is killed by
:meth:`SubreaperContainment.sweep` (run at each attempt's start and end and
every heartbeat), as Slurm kills what a job leaves behind. Adopted children
that exit are waited for (reaped) here; the pids the worker waits for itself
(task shells, the reaper sidecar) are in :data:`MANAGED_PIDS` and never are.

Cost: an attempt that ends on its own costs one read of
``/proc/<worker>/task/*/children`` (no ``/proc`` scan) unless something was
adopted; only a cancel walks the task's live tree.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
from collections.abc import Iterator

import psutil

from worker.box import Box, Containment

PR_SET_CHILD_SUBREAPER = 36
# Pids the worker waits for itself: never reaped here, never taken for orphans.
MANAGED_PIDS: set[int] = set()


def set_child_subreaper() -> bool:
    """``prctl(PR_SET_CHILD_SUBREAPER, 1)`` on this process (Linux only)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def own_children() -> list[int]:
    """This process's children (from every thread's ``children`` file)."""
    me = os.getpid()
    pids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{me}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{me}/task/{tid}/children") as kids:
                pids += [int(p) for p in kids.read().split()]
    except OSError:
        return [p.pid for p in psutil.Process().children()]
    return pids


def adopted() -> list[int]:
    return [pid for pid in own_children() if pid not in MANAGED_PIDS]


def attempt_marker(task_id: str, attempt: int) -> tuple[bytes, bytes]:
    """The two environment entries every process of an attempt starts with."""
    return b"BANYAN_TASK_ID=" + os.fsencode(task_id), b"BANYAN_ATTEMPT=%d" % attempt


def carries(pid: int, marker: tuple[bytes, bytes]) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            entries = set(environ.read().split(b"\0"))
    except OSError:
        return False
    return all(entry in entries for entry in marker)


def reap_adopted() -> None:
    """Wait for adopted children that have exited (zombies)."""
    for pid in adopted():
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _tree(proc: psutil.Process) -> Iterator[tuple[int, float]]:
    """(pid, start time) of ``proc`` and its live descendants."""
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return
    for member in procs:
        try:
            if member.status() != psutil.STATUS_ZOMBIE:
                yield member.pid, member.create_time()
        except psutil.Error:
            continue


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


class SubreaperBox(Box):
    kind = "subreaper"

    def __init__(self, owner: SubreaperContainment, task_id: str, attempt: int) -> None:
        self.owner = owner
        self.marker = attempt_marker(task_id, attempt)
        self.leader: psutil.Process | None = None
        self.known: dict[int, float] = {}  # pid → start time of each process seen

    def started(self, pid: int) -> None:
        MANAGED_PIDS.add(pid)
        with contextlib.suppress(psutil.Error):
            self.leader = psutil.Process(pid)

    def claims(self, proc: psutil.Process) -> bool:
        try:
            return self.known.get(proc.pid) == proc.create_time() or carries(proc.pid, self.marker)
        except psutil.Error:
            return False

    def members(self) -> list[int]:
        """Live processes of the attempt but its shell; remembers them."""
        found: dict[int, float] = {}
        leader = self.leader
        if leader is not None:
            with contextlib.suppress(psutil.Error):  # its tree, while it lives
                if leader.status() != psutil.STATUS_ZOMBIE:
                    found.update(_tree(leader))
        for pid in adopted():
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if self.claims(proc):
                    found.update(_tree(proc))
        if leader is not None:
            found.pop(leader.pid, None)  # the group's leader: the runner's to signal
        self.known.update(found)
        return list(found)

    def reaper_tag(self) -> str:
        task = self.marker[0].split(b"=", 1)[1].decode()
        attempt = self.marker[1].split(b"=", 1)[1].decode()
        return f"env:{attempt}:{task}"

    def close(self) -> None:
        self.owner.boxes.discard(self)
        if self.leader is not None:
            MANAGED_PIDS.discard(self.leader.pid)
        self.owner.sweep()


class SubreaperContainment(Containment):
    kind = "subreaper"

    def __init__(self, why_not_cgroup: str) -> None:
        self.description = f"subreaper (PR_SET_CHILD_SUBREAPER; {why_not_cgroup})"
        self.boxes: set[SubreaperBox] = set()

    def open(self, task_id: str, attempt: int, *, memory_limit_bytes: int = 0) -> Box:
        self.sweep()
        box = SubreaperBox(self, task_id, attempt)
        self.boxes.add(box)
        return box

    def sweep(self) -> None:
        """Reap adopted children that exited; kill those no running attempt
        claims (and their trees): leftovers of attempts that have ended."""
        reap_adopted()
        leftovers: list[int] = []
        for pid in adopted():
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if not any(box.claims(proc) for box in self.boxes):
                    leftovers += [p for p, _ in _tree(proc)]
        _kill_all(leftovers)

    def close(self) -> None:
        self.sweep()
