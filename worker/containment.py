"""Where a task's processes are kept, so that every descendant can be found
and killed, not only the task's process group (``setsid``, double forks and
daemons leave the group).

Two kinds, chosen once at start-up by :func:`detect` (``--containment``,
default ``auto``) and logged once (``containment: cgroup v2 at …`` or
``containment: subreaper …``); docs/guide/workers.rst, "Containment":

**cgroup v2** (:mod:`worker.cgroups`; where the unified hierarchy is mounted and this process may
create cgroups under its own and move itself between them). The worker makes
``<its cgroup>/banyan-worker-<pid>/`` and, per attempt, a child
``attempt-<n>`` (``<task>-<attempt>-<n>`` with memory accounting). An ended
attempt's cgroup, once empty, is kept for a later attempt (up to
:data:`~worker.cgroups.POOL_MAX`) instead of removed and made again, except
with memory accounting, whose ``memory.peak`` cannot be reset everywhere.
The task starts inside it with no race and no cost to the spawn: the worker
moves *itself* into the attempt's cgroup, forks the task's shell (vfork +
exec, see :mod:`worker.task_process`), and moves itself back
(two small writes, ~25 µs of CPU each here, which may also wait on the
kernel's cgroup lock: the largest share of containment's cost, left because
Python 3.11 and glibc 2.36 offer no ``CLONE_INTO_CGROUP`` spawn and a child
moved after it started could fork first). Every descendant is then in that cgroup, whatever
it does short of being root and moving itself out. Kill = ``cgroup.kill``;
"gone" = ``cgroup.events`` says ``populated 0``. Where the memory controller
is enabled for it, ``memory.peak`` is the attempt's peak and
``--enforce-memory`` writes the task's memory request to ``memory.max``.

**subreaper** (:mod:`worker.subreaper`; otherwise): the worker sets ``PR_SET_CHILD_SUBREAPER`` so an
orphaned task process (its parent exited: ``setsid cmd &`` in a shell that
ends, or a daemon's double fork) is re-parented to the worker instead of to
PID 1. A task's processes are then the tree under its shell plus the worker's
*adopted* children (not a task's shell, not the reaper sidecar) and their
trees; an adopted process belongs to the attempt that saw it in its tree
before (pid + start time, so a reused pid is never taken for it) or whose
``BANYAN_TASK_ID``/``BANYAN_ATTEMPT`` it carries in its environment; one
that belongs to no running attempt is a leftover and is killed. The worker
waits for (reaps) adopted children that exit.

If the worker dies (``kill -9``), the reaper sidecar (:mod:`worker.reaper`)
kills what each registered attempt left: it is told the attempt's cgroup
path, or in subreaper mode its task id and attempt, and then finds every
process whose environment carries them (orphans of a dead worker go to PID 1,
so parentage says nothing any more). A process that re-executes itself with
an empty environment escapes that last scan; cgroups have no such gap.
"""

from __future__ import annotations

import logging

from worker.box import Box, Containment
from worker.cgroups import CgroupContainment, cgroup2_mount, cgroup_procs, try_cgroup
from worker.subreaper import MANAGED_PIDS, SubreaperContainment, set_child_subreaper

__all__ = [
    "KINDS",
    "MANAGED_PIDS",
    "Box",
    "CgroupContainment",
    "Containment",
    "SubreaperContainment",
    "cgroup_procs",
    "detect",
    "set_child_subreaper",
    "try_cgroup",
]

log = logging.getLogger(__name__)
KINDS = ("auto", "cgroup", "subreaper")


def detect(*, enforce_memory: bool = False, kind: str = "auto") -> Containment:
    """The best containment this process can have (``kind``: ``auto``, or
    insist on ``cgroup`` or ``subreaper``); logs which, once."""
    if kind == "subreaper":
        found: CgroupContainment | str = "--containment subreaper"
    else:
        found = try_cgroup(enforce_memory=enforce_memory)
        if kind == "cgroup" and not isinstance(found, CgroupContainment):
            raise ValueError(f"--containment cgroup: {found}")
    if isinstance(found, CgroupContainment):
        chosen: Containment = found
        if not found.favors_dynmods:
            log.info(
                "cgroup v2 is mounted without favordynmods: a task started after an idle "
                "spell waits ~10 ms in the kernel for its cgroup; "
                "`mount -o remount,favordynmods %s` (Linux 6.0+, as root) removes that wait",
                cgroup2_mount(),
            )
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
