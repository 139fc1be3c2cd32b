"""Where a task's processes are kept, so that every descendant can be found
and killed, not only the task's process group (``setsid``, double forks and
daemons leave the group).

Two kinds, chosen once at start-up by :func:`detect`, logged, and shown in
``banyan-worker --help``'s docs (guide/workers, "Containment"):

**cgroup v2** (where the unified hierarchy is mounted and this process may
create cgroups under its own and move itself between them). The worker makes
``<its cgroup>/banyan-worker-<pid>/`` and, per attempt, a child
``<task>-<attempt>-<n>``. The task starts inside it with no race and no cost
to the spawn: the worker moves *itself* into the attempt's cgroup, forks the
task's shell (vfork + exec, see :mod:`worker.runner`), and moves itself back
(two small writes, ~10 µs). Every descendant is then in that cgroup, whatever
it does short of being root and moving itself out. Kill = ``cgroup.kill``;
"gone" = ``cgroup.events`` says ``populated 0``. Where the memory controller
is enabled for it, ``memory.peak`` is the attempt's peak and
``--enforce-memory`` writes the task's memory request to ``memory.max``.

**subreaper** (otherwise): the worker sets ``PR_SET_CHILD_SUBREAPER`` so an
orphaned task process (its parent exited: ``setsid cmd &`` in a shell that
ends, or a daemon's double fork) is re-parented to the worker instead of to
PID 1. A task's processes are then the tree under its shell plus the worker's
*adopted* children (not a task's shell, not the reaper sidecar) and their
trees; an adopted process belongs to the attempt that saw it in its tree
before (pid + start time, so a reused pid is never taken for it) or whose
``BANYAN_TASK_ID``/``BANYAN_ATTEMPT`` it carries in its environment. The
worker waits for (reaps) adopted children that exit.

If the worker dies (``kill -9``), the reaper sidecar (:mod:`worker.reaper`)
kills what each registered attempt left: it is told the attempt's cgroup
path, or in subreaper mode its task id and attempt, and then finds every
process whose environment carries them (orphans of a dead worker go to PID 1,
so parentage says nothing any more). A process that re-executes itself with
an empty environment escapes that last scan; cgroups have no such gap.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import itertools
import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
CGROUP2 = "cgroup2"
# Pids the worker waits for itself (task shells, the reaper sidecar): never
# reaped here, never taken for adopted orphans.
MANAGED_PIDS: set[int] = set()
SCOPE_PREFIX = "banyan-worker-"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def cgroup2_mount() -> Path | None:
    """Where the unified (v2) hierarchy is mounted, from /proc/self/mountinfo."""
    try:
        with open("/proc/self/mountinfo") as mountinfo:
            for line in mountinfo:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == CGROUP2:
                    return Path(left.split()[4])
    except OSError:
        pass
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


class Box:
    """Where one attempt's processes are: what the runner signals and waits on."""

    kind = "group"

    def spawning(self) -> contextlib.AbstractContextManager[None]:
        """Around the spawn of the task's shell."""
        return contextlib.nullcontext()

    def started(self, pid: int) -> None:
        """The task's shell is ``pid``."""

    def members(self) -> list[int]:
        """Live processes of the attempt outside its process group's reach too."""
        return []

    def signal(self, signum: int) -> None:
        for pid in self.members():
            with contextlib.suppress(OSError):
                os.kill(pid, signum)

    def kill(self) -> None:
        self.signal(9)

    def empty(self) -> bool:
        return not self.members()

    def peak_memory_bytes(self) -> int:
        """The attempt's peak memory from the kernel's accounting, or 0."""
        return 0

    def reaper_tag(self) -> str:
        """What the reaper sidecar is told to kill this attempt's processes by."""
        return ""

    def close(self) -> None:
        """The attempt has ended and its processes are gone or killed."""


class Containment:
    """How attempts are kept (a :class:`Box` each). This base: process groups only."""

    kind = "group"
    description = "process groups only"

    def open(self, task_id: str, attempt: int, *, memory_limit_bytes: int = 0) -> Box:
        return Box()

    def close(self) -> None:
        """The worker is exiting."""


# --- cgroup v2 ----------------------------------------------------------------------


class CgroupBox(Box):
    kind = "cgroup"

    def __init__(self, owner: CgroupContainment, path: Path) -> None:
        self.owner = owner
        self.path = path

    @contextlib.contextmanager
    def spawning(self) -> Iterator[None]:
        me = str(os.getpid())
        try:
            _write(self.path / "cgroup.procs", me)
        except OSError as exc:  # then the shell is moved in just after it started
            log.warning("cannot move the worker into %s (%s)", self.path, exc)
            yield
            return
        try:
            yield
        finally:
            _write(self.owner.home / "cgroup.procs", me)

    def started(self, pid: int) -> None:
        if pid not in cgroup_procs(self.path):
            with contextlib.suppress(OSError):
                _write(self.path / "cgroup.procs", str(pid))

    def members(self) -> list[int]:
        return cgroup_procs(self.path)

    def kill(self) -> None:
        kill_cgroup(self.path)

    def empty(self) -> bool:
        try:
            return "populated 0" in (self.path / "cgroup.events").read_text()
        except OSError:
            return True

    def peak_memory_bytes(self) -> int:
        try:
            return int((self.path / "memory.peak").read_text())
        except (OSError, ValueError):
            return 0

    def reaper_tag(self) -> str:
        return f"cg:{self.path}"

    def close(self) -> None:
        self.owner.remove(self.path)


class CgroupContainment(Containment):
    kind = "cgroup"

    def __init__(self, scope: Path, home: Path, *, enforce_memory: bool) -> None:
        self.scope = scope
        self.home = home  # the worker's own cgroup, which it returns to after each spawn
        self.memory = "memory" in _controllers(scope)
        self.enforce_memory = enforce_memory and self.memory
        self._serial = itertools.count(1)
        self._leftovers: list[Path] = []
        accounting = "memory.peak and memory.max" if self.memory else "no memory controller"
        self.description = f"cgroup v2 at {scope} ({accounting})"

    def open(self, task_id: str, attempt: int, *, memory_limit_bytes: int = 0) -> Box:
        self._remove_leftovers()
        path = self.scope / f"{_SAFE.sub('_', task_id)}-{attempt}-{next(self._serial)}"
        path.mkdir()
        if self.enforce_memory and memory_limit_bytes > 0:
            _write(path / "memory.max", str(memory_limit_bytes))
            with contextlib.suppress(OSError):  # no swap accounting: nothing to limit
                _write(path / "memory.swap.max", "0")
        return CgroupBox(self, path)

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


def _controllers(path: Path) -> set[str]:
    try:
        return set((path / "cgroup.controllers").read_text().split())
    except OSError:
        return set()


def _remove_stale_scopes(home: Path) -> None:
    """Remove the (empty) cgroups of workers of this cgroup that have died: a
    worker killed with ``kill -9`` cannot remove its own."""
    try:
        scopes = [p for p in home.iterdir() if p.name.startswith(SCOPE_PREFIX)]
    except OSError:
        return
    for scope in scopes[:1000]:  # bounded
        pid = scope.name.removeprefix(SCOPE_PREFIX)
        if not pid.isdigit() or psutil.pid_exists(int(pid)):
            continue
        with contextlib.suppress(OSError):
            for child in scope.iterdir():
                if child.is_dir():
                    kill_cgroup(child)  # normally empty: the sidecar killed them
                    with contextlib.suppress(OSError):
                        child.rmdir()
            scope.rmdir()


def _try_cgroup(*, enforce_memory: bool) -> CgroupContainment | str:
    """A working cgroup scope for this worker, or why there is none."""
    mount, own = cgroup2_mount(), own_cgroup()
    if mount is None or own is None:
        return "no cgroup v2 hierarchy"
    home = mount / own.lstrip("/")
    _remove_stale_scopes(home)
    scope = home / f"{SCOPE_PREFIX}{os.getpid()}"
    probe = scope / "probe"
    me = str(os.getpid())
    try:
        scope.mkdir(exist_ok=True)
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
    containment = CgroupContainment(scope, home, enforce_memory=enforce_memory)
    if "memory" in _controllers(home) and not containment.memory:
        with contextlib.suppress(OSError):  # our own subtree only; never a parent's
            _write(scope / "cgroup.subtree_control", "+memory")
            containment = CgroupContainment(scope, home, enforce_memory=enforce_memory)
    return containment


# --- subreaper ----------------------------------------------------------------------


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


def attempt_marker(task_id: str, attempt: int) -> tuple[bytes, bytes]:
    """The two environment entries every process of an attempt starts with."""
    return (
        b"BANYAN_TASK_ID=" + os.fsencode(task_id),
        b"BANYAN_ATTEMPT=" + str(attempt).encode(),
    )


def carries(pid: int, marker: tuple[bytes, bytes]) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            entries = set(environ.read().split(b"\0"))
    except OSError:
        return False
    return all(entry in entries for entry in marker)


def reap_adopted() -> None:
    """Wait for adopted children that have exited (zombies); never a managed pid."""
    for pid in own_children():
        if pid in MANAGED_PIDS:
            continue
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


class SubreaperBox(Box):
    kind = "subreaper"

    def __init__(self, task_id: str, attempt: int) -> None:
        self.marker = attempt_marker(task_id, attempt)
        self.leader: psutil.Process | None = None
        self.known: dict[int, float] = {}  # pid → create_time of every process seen

    def started(self, pid: int) -> None:
        MANAGED_PIDS.add(pid)
        with contextlib.suppress(psutil.Error):
            self.leader = psutil.Process(pid)

    def _roots(self) -> Iterable[psutil.Process]:
        if self.leader is not None:
            yield self.leader
        for pid in own_children():
            if pid in MANAGED_PIDS:
                continue
            try:
                proc = psutil.Process(pid)
                mine = self.known.get(pid) == proc.create_time() or carries(pid, self.marker)
            except psutil.Error:
                continue
            if mine:
                yield proc

    def members(self) -> list[int]:
        """Live processes of the attempt; remembers them (pid + start time)."""
        found: dict[int, float] = {}
        for root in self._roots():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for proc in tree:
                try:
                    if proc.status() != psutil.STATUS_ZOMBIE:
                        found[proc.pid] = proc.create_time()
                except psutil.Error:
                    continue
        if self.leader is not None:
            found.pop(self.leader.pid, None)  # the group's leader: the runner's to signal
        self.known.update(found)
        return list(found)

    def reaper_tag(self) -> str:
        task = self.marker[0].split(b"=", 1)[1].decode()
        attempt = self.marker[1].split(b"=", 1)[1].decode()
        return f"env:{attempt}:{task}"

    def close(self) -> None:
        if self.leader is not None:
            MANAGED_PIDS.discard(self.leader.pid)
        reap_adopted()


class SubreaperContainment(Containment):
    kind = "subreaper"

    def __init__(self, why_not_cgroup: str) -> None:
        self.description = f"subreaper (PR_SET_CHILD_SUBREAPER; {why_not_cgroup})"

    def open(self, task_id: str, attempt: int, *, memory_limit_bytes: int = 0) -> Box:
        reap_adopted()
        return SubreaperBox(task_id, attempt)


KINDS = ("auto", "cgroup", "subreaper")


def detect(*, enforce_memory: bool = False, kind: str = "auto") -> Containment:
    """The best containment this process can have (``kind``: ``auto``, or
    insist on ``cgroup`` or ``subreaper``); logs which, once."""
    if kind == "subreaper":
        found: CgroupContainment | str = "--containment subreaper"
    else:
        found = _try_cgroup(enforce_memory=enforce_memory)
        if kind == "cgroup" and not isinstance(found, CgroupContainment):
            raise ValueError(f"--containment cgroup: {found}")
    if isinstance(found, CgroupContainment):
        chosen: Containment = found
        if enforce_memory and not found.enforce_memory:
            log.warning("--enforce-memory: no memory controller in %s; not enforced", found.scope)
    elif set_child_subreaper():
        chosen = SubreaperContainment(found)
        if enforce_memory:
            log.warning("--enforce-memory needs cgroup v2 with the memory controller; ignored")
    else:
        chosen = Containment()
        log.warning(
            "no cgroup v2 and no PR_SET_CHILD_SUBREAPER: a task's escaped processes "
            "(setsid, daemons) are not tracked"
        )
    log.info("containment: %s", chosen.description)
    return chosen
