"""What the reaper sidecar (:mod:`worker.reaper`) kills besides process
groups: the rest of an attempt, named by the tag it was registered with
(``cg:PATH``: its cgroup v2; ``env:ATTEMPT:TASK``: every process whose
environment carries that attempt's ``BANYAN_TASK_ID`` and
``BANYAN_ATTEMPT``), and the worker's cgroups once it is gone.

Standard library only, like the sidecar itself, so that it starts fast and
cannot fail on the worker's dependencies."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

ENV_KILL_ROUNDS = 5  # a scan can miss a child forked meanwhile: again, bounded


def kill_tagged(tags: list[bytes]) -> None:
    """SIGKILL what the tags name: an attempt's cgroup, or its environment."""
    markers = []
    for tag in tags:
        kind, _, rest = tag.partition(b":")
        if kind == b"cg":
            _kill_cgroup(rest)
        elif kind == b"env":
            attempt, _, task = rest.partition(b":")
            markers.append((b"BANYAN_TASK_ID=" + task, b"BANYAN_ATTEMPT=" + attempt))
    for _ in range(ENV_KILL_ROUNDS if markers else 0):
        if not _kill_carriers(markers):
            break


def _kill_cgroup(path: bytes) -> None:
    with (
        contextlib.suppress(OSError),
        open(os.path.join(path, b"cgroup.kill"), "wb", buffering=0) as kill_file,
    ):
        kill_file.write(b"1")
        return
    with (  # no cgroup.kill: one by one
        contextlib.suppress(OSError),
        open(os.path.join(path, b"cgroup.procs"), "rb") as procs,
    ):
        for pid in procs.read().split():
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)


SCOPE_REMOVE_TIMEOUT_S = 5.0


def remove_scope(scope: str) -> None:
    """Kill and remove what is left of the worker's attempt cgroups, then the
    scope itself; a cgroup can be removed only once its processes are gone."""
    deadline = time.monotonic() + SCOPE_REMOVE_TIMEOUT_S
    with contextlib.suppress(OSError):
        children = [e.path for e in os.scandir(scope) if e.is_dir(follow_symlinks=False)]
        for child in children:
            _kill_cgroup(os.fsencode(child))
        for child in children:
            while True:
                try:
                    os.rmdir(child)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)
        os.rmdir(scope)


def _kill_carriers(markers: list[tuple[bytes, bytes]]) -> int:
    """SIGKILL every process whose environment has both entries of a marker."""
    killed = 0
    for pid in _other_pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                entries = set(environ.read().split(b"\0"))
        except OSError:
            continue
        if any(task in entries and attempt in entries for task, attempt in markers):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


def _other_pids() -> Iterator[int]:
    """Every process's pid but this one's (from /proc)."""
    me = os.getpid()
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != me:
            yield int(name)


def unregistered_shells(worker: int, registered: set[int]) -> set[int]:
    """Task shells ``worker`` started but has not registered (``+PGID``): its
    children that lead a group of their own and carry a task's
    ``BANYAN_TASK_ID``. A worker frozen between a spawn and that line leaves
    one; the fence must stop it with the rest. The worker cannot reap a child
    while frozen, so none of these numbers has gone to someone else."""
    found: set[int] = set()
    for pid in _other_pids():
        if pid in registered:
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
            if int(fields[1]) != worker or int(fields[2]) != pid:
                continue
            with open(f"/proc/{pid}/environ", "rb") as environ:
                if b"\0BANYAN_TASK_ID=" not in b"\0" + environ.read():
                    continue
        except (OSError, ValueError, IndexError):
            continue
        found.add(pid)
    return found
