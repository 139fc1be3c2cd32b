"""The two shapes every kind of containment (:mod:`worker.containment`) has:
a :class:`Containment` made once per worker, and a :class:`Box` per attempt,
which the runner (:mod:`worker.runner`) signals, kills and waits on besides
the task's process group. The bases here hold process groups only: every
method is a no-op (nothing outside the group is known)."""

from __future__ import annotations

import contextlib
import os


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

    def sweep(self) -> None:
        """Now and then (each heartbeat): kill what ended attempts left behind."""
