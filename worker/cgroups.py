"""cgroup v2 containment: one cgroup per attempt (see :mod:`worker.containment`
for why and how the task's shell starts inside it)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

import psutil

from worker.box import Box, Containment

log = logging.getLogger(__name__)

CGROUP2 = "cgroup2"
SCOPE_PREFIX = "banyan-worker-"
MIN_MEMORY_LIMIT_BYTES = 16 << 20  # --enforce-memory never sets memory.max below this
# Empty attempt cgroups kept for the next attempts: mkdir + rmdir (and the
# kernel's set-up of a new cgroup for the first fork in it) cost the worker
# ~70 µs of CPU per task, a reuse one read of cgroup.events.
POOL_MAX = 16
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _write(path: Path | str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def cgroup2_mount() -> Path | None:
    """Where the unified (v2) hierarchy is mounted, from /proc/self/mountinfo."""
    found = cgroup2_mountinfo()
    return found[0] if found is not None else None


def favors_dynmods() -> bool:
    """Whether the v2 hierarchy is mounted with ``favordynmods`` (Linux 6.0+).

    Without it, moving a process between cgroups waits for an RCU grace
    period whenever no other move happened in the last few milliseconds:
    the first spawn after an idle spell waits 8-30 ms in the kernel (p50
    13 ms measured on a 2-core VM) before the task's shell can start. With
    it, a move costs tens of microseconds; forks and exits pay a little
    more. Busy workers move often enough not to notice either way."""
    found = cgroup2_mountinfo()
    return found is not None and "favordynmods" in found[1]


def cgroup2_mountinfo() -> tuple[Path, set[str]] | None:
    """The unified hierarchy's mount point and superblock options, from
    /proc/self/mountinfo (None: not mounted, or not readable)."""
    try:
        with open("/proc/self/mountinfo") as mountinfo:
            return parse_mountinfo(mountinfo)
    except OSError:
        return None


def parse_mountinfo(lines: Iterable[str]) -> tuple[Path, set[str]] | None:
    """The unified hierarchy's mount point and its superblock options, from
    the lines of a ``mountinfo`` (``… MOUNTPOINT OPTIONS … - cgroup2 SOURCE
    SUPEROPTIONS``)."""
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = right.split()
        if len(fields) >= 3 and fields[0] == CGROUP2 and len(left.split()) > 4:
            return Path(left.split()[4]), set(fields[2].split(","))
    return None


def own_cgroup() -> str | None:
    """This process's v2 cgroup (the ``0::`` line of /proc/self/cgroup)."""
    try:
        with open("/proc/self/cgroup") as cgroup:
            for line in cgroup:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None


def cgroup_procs(path: Path) -> list[int]:
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def kill_cgroup(path: Path) -> None:
    """SIGKILL every process in ``path`` (and below); never this process."""
    me = os.getpid()
    kill_file = path / "cgroup.kill"
    if me not in cgroup_procs(path) and kill_file.exists():
        with contextlib.suppress(OSError):
            _write(kill_file, "1")
            return
    for pid in cgroup_procs(path):  # no cgroup.kill (kernel < 5.14), or we are inside
        if pid != me:
            with contextlib.suppress(OSError):
                os.kill(pid, 9)


class CgroupBox(Box):
    kind = "cgroup"

    def __init__(self, owner: CgroupContainment, path: Path) -> None:
        self.owner = owner
        self.path = path
        self._procs = f"{path}/cgroup.procs"
        self._moved = False  # whether the shell was forked from inside the cgroup
        # ``kill`` found it empty (cgroup.events): nothing can join it after
        # that but by a migration, which only the worker itself does at a spawn.
        self._emptied = False

    @contextlib.contextmanager
    def spawning(self) -> Iterator[None]:
        me = str(os.getpid())
        try:
            _write(self._procs, me)
        except OSError as exc:  # then the shell is moved in just after it started
            log.warning("cannot move the worker into %s (%s)", self.path, exc)
            yield
            return
        self._moved = True
        try:
            yield
        finally:
            try:
                _write(self.owner.home_procs, me)
            except OSError as exc:  # kill_cgroup never kills this process, at least
                log.error("cannot move the worker back to %s: %s", self.owner.home, exc)

    def started(self, pid: int) -> None:
        if not self._moved:
            with contextlib.suppress(OSError):
                _write(self._procs, str(pid))

    def members(self) -> list[int]:
        return cgroup_procs(self.path)

    def kill(self) -> None:
        # Most tasks leave nothing behind (a zombie leader no longer counts):
        # one read of cgroup.events then spares reading cgroup.procs and
        # writing cgroup.kill, and ``close`` need not read it again.
        if _unpopulated(self.path):
            self._emptied = True
            return
        kill_cgroup(self.path)

    def empty(self) -> bool:
        try:
            return "populated 0" in (self.path / "cgroup.events").read_text()
        except OSError:
            return True

    def peak_memory_bytes(self) -> int:
        if not self.owner.memory:  # no memory.peak to read
            return 0
        try:
            return int((self.path / "memory.peak").read_text())
        except (OSError, ValueError):
            return 0

    def reaper_tag(self) -> str:
        return f"cg:{self.path}"

    def close(self) -> None:
        self.owner.release(self.path, empty=self._emptied)


class CgroupContainment(Containment):
    kind = "cgroup"

    def __init__(self, scope: Path, home: Path, *, memory: bool, enforce_memory: bool) -> None:
        self.scope = scope
        self.home = home  # the worker's own cgroup, which it returns to after each spawn
        self.home_procs = f"{home}/cgroup.procs"
        self.memory = memory  # attempts have memory.peak and memory.max
        self.enforce_memory = enforce_memory and self.memory
        self._serial = itertools.count(1)
        self._leftovers: list[Path] = []
        # Empty attempt cgroups to reuse. Not with memory accounting: a reused
        # cgroup's memory.peak would still hold an earlier attempt's peak.
        self.pooled = not self.memory
        self._pool: list[Path] = []
        accounting = "memory.peak and memory.max" if self.memory else "no memory controller"
        self.description = f"cgroup v2 at {scope} ({accounting})"
        self.favors_dynmods = favors_dynmods()

    def open(self, task_id: str, attempt: int, *, memory_limit_bytes: int = 0) -> Box:
        self._remove_leftovers()
        if self._pool:
            return CgroupBox(self, self._pool.pop())
        if self.pooled:  # it will hold other attempts after this one
            path = self.scope / f"attempt-{next(self._serial)}"
        else:
            path = self.scope / f"{_SAFE.sub('_', task_id)}-{attempt}-{next(self._serial)}"
        path.mkdir()
        if self.enforce_memory and memory_limit_bytes > 0:
            # The worker itself passes through the cgroup at each spawn: a limit
            # too small for that could make the worker the OOM killer's victim.
            limit = max(memory_limit_bytes, MIN_MEMORY_LIMIT_BYTES)
            _write(path / "memory.max", str(limit))
            with contextlib.suppress(OSError):  # no swap accounting: nothing to limit
                _write(path / "memory.swap.max", "0")
        return CgroupBox(self, path)

    def release(self, path: Path, *, empty: bool = False) -> None:
        """An attempt has ended: keep its cgroup for the next one if it is
        empty (``populated 0``: every process of it has exited; ``empty``:
        already seen so), else remove it."""
        if self.pooled and len(self._pool) < POOL_MAX and (empty or _unpopulated(path)):
            self._pool.append(path)
        else:
            self.remove(path)

    def remove(self, path: Path) -> None:
        try:
            path.rmdir()
        except FileNotFoundError:
            pass
        except OSError:  # EBUSY: killed processes not yet gone; tried again later
            self._leftovers.append(path)

    def _remove_leftovers(self) -> None:
        leftovers, self._leftovers = self._leftovers, []
        for path in leftovers:
            self.remove(path)

    def close(self) -> None:
        try:  # the reaper sidecar, closed first, normally removed it all
            children = [p for p in self.scope.iterdir() if p.is_dir()]
        except OSError:
            return
        for child in children:
            kill_cgroup(child)
            with contextlib.suppress(OSError):
                child.rmdir()
        with contextlib.suppress(OSError):
            self.scope.rmdir()


def _unpopulated(path: Path) -> bool:
    try:
        fd = os.open(f"{path}/cgroup.events", os.O_RDONLY)
    except OSError:
        return False
    try:
        return b"populated 0" in os.read(fd, 4096)
    except OSError:
        return False
    finally:
        os.close(fd)


def _controllers(path: Path) -> set[str]:
    try:
        return set((path / "cgroup.controllers").read_text().split())
    except OSError:
        return set()


def _remove_stale_scopes(home: Path) -> None:
    """Remove the empty cgroups of workers of this cgroup that have died (a
    worker killed with ``kill -9`` leaves them if its sidecar could not)."""
    try:
        scopes = [p for p in home.iterdir() if p.name.startswith(SCOPE_PREFIX)]
    except OSError:
        return
    for scope in scopes[:1000]:  # bounded
        pid = scope.name.removeprefix(SCOPE_PREFIX).split("-")[0]
        if not pid.isdigit() or psutil.pid_exists(int(pid)):
            continue
        # Removal only, never a kill: a cgroup that still holds processes
        # (another PID namespace's worker, say) cannot be removed and stays.
        with contextlib.suppress(OSError):
            for child in scope.iterdir():
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            scope.rmdir()


def try_cgroup(*, enforce_memory: bool) -> CgroupContainment | str:
    """A working cgroup scope for this worker, or why there is none."""
    mount, own = cgroup2_mount(), own_cgroup()
    if mount is None or own is None:
        return "no cgroup v2 hierarchy"
    home = mount / own.lstrip("/")
    _remove_stale_scopes(home)
    scope = home / f"{SCOPE_PREFIX}{os.getpid()}"
    if scope.exists():  # not ours: another PID namespace's worker of the same pid
        scope = scope.with_name(f"{scope.name}-{secrets.token_hex(4)}")
    probe = scope / "probe"
    me = str(os.getpid())
    try:
        scope.mkdir()
        probe.mkdir(exist_ok=True)
        _write(probe / "cgroup.procs", me)  # exactly what each spawn does
        _write(home / "cgroup.procs", me)
        probe.rmdir()
    except OSError as exc:
        with contextlib.suppress(OSError):
            _write(home / "cgroup.procs", me)
        for path in (probe, scope):
            with contextlib.suppress(OSError):
                path.rmdir()
        return f"cgroup v2 at {mount} not writable here ({exc.strerror or exc})"
    # Attempts get memory accounting when our cgroup hands the controller down
    # to the scope (its subtree_control); we enable it in our own scope only,
    # never in a parent's.
    memory = False
    if "memory" in _controllers(scope):
        try:
            _write(scope / "cgroup.subtree_control", "+memory")
            memory = True
        except OSError as exc:
            log.warning("cannot enable the memory controller in %s: %s", scope, exc)
    return CgroupContainment(scope, home, memory=memory, enforce_memory=enforce_memory)
