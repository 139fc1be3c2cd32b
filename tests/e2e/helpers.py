"""Helpers only the end-to-end tests need, next to the shared harness
(``testbed``: the server and worker processes, the blocking client, waits):
finding leftover processes by command line or environment, and reading the
marks a test's commands wrote."""

from __future__ import annotations

import shlex
from pathlib import Path

import psutil


def processes_with(marker: str) -> list[int]:
    """PIDs of live (non-zombie) processes whose command line contains ``marker``."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        info = process.info
        if info["status"] == psutil.STATUS_ZOMBIE or not info["cmdline"]:
            continue
        if any(marker in part for part in info["cmdline"]):
            found.append(int(info["pid"]))
    return found


def read_marks(path: Path) -> list[list[str]]:
    """The lines a test's commands appended to ``path``, split on whitespace."""
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def processes_with_env(name: str, value: str) -> list[int]:
    """PIDs of live (non-zombie) processes of this user whose environment has
    ``name=value`` (what every process a task starts inherits)."""
    found = []
    for process in psutil.process_iter(["pid", "status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if process.environ().get(name) == value:
                found.append(int(process.info["pid"]))
        except psutil.Error:
            continue  # gone meanwhile, or not ours
    return found


def until_file(path: Path, max_s: float = 30) -> str:
    """A shell snippet that waits until ``path`` exists (polled every 50 ms, at
    most ``max_s``): a task that runs exactly as long as the test needs it to,
    instead of a ``sleep`` long enough on a slow machine."""
    rounds = int(max_s / 0.05)
    quoted = shlex.quote(str(path))
    return f"for i in $(seq {rounds}); do test -f {quoted} && break; sleep 0.05; done"
