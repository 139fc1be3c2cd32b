"""Processes the harness starts: a free loopback port, an environment without
the caller's ``BANYAN_*`` settings, bounded condition waits, and :class:`Proc`
(one started process, its log, and how to end it and what it left behind)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import psutil

BIN = Path(sys.executable).parent  # the console scripts of this interpreter's venv
POLL_S = 0.05
CLK_TCK = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], T], timeout: float, what: str = "condition", interval: float = POLL_S
) -> T:
    """Poll ``condition`` every ``interval`` s until it returns something truthy
    (returned) or ``timeout`` s have passed (AssertionError with the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any BANYAN_* variable of the caller's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANYAN_")}
    env.update(extra)
    return env


def launch(argv: list[str], *, log: Path, env: dict[str, str], cwd: Path, name: str) -> Proc:
    """Start ``argv`` with stdout and stderr appended to ``log``."""
    with log.open("ab") as out:
        popen = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    return Proc(popen, log, name)


@dataclass
class Proc:
    """A process the harness started, with its log file."""

    popen: subprocess.Popen[bytes]
    log: Path
    name: str
    descendants: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def remember_descendants(self) -> None:
        """Note its children now, so they can be ended after it is gone."""
        try:
            kids = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return
        for kid in kids:
            self.descendants.setdefault(kid.pid, kid)

    def log_text(self, tail: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        """User + system CPU of the process itself, all its threads."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def stop(self, *, grace_s: float) -> int:
        """SIGTERM, wait up to ``grace_s``, then SIGKILL (``grace_s`` 0: SIGKILL
        at once, which also ends a SIGSTOPped process); then whatever it left
        behind. Returns the exit code."""
        return stop_all([self], grace_s=grace_s)[0]

    def end_leftovers(self) -> None:
        """End the descendants noted earlier (see :func:`end_leftovers`)."""
        end_leftovers([self])


def stop_all(procs: list[Proc], *, grace_s: float) -> list[int]:
    """:meth:`Proc.stop` for several processes at once: signal them all, then
    wait, so their shutdowns overlap; returns their exit codes."""
    running = [proc for proc in procs if proc.popen.poll() is None]
    for proc in running:
        proc.remember_descendants()
        proc.popen.send_signal(signal.SIGTERM if grace_s > 0 else signal.SIGKILL)
    deadline = time.monotonic() + grace_s
    for proc in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        if proc.popen.poll() is None:
            proc.popen.kill()
    codes = [proc.popen.wait(timeout=20) for proc in procs]
    end_leftovers(procs)
    return codes


def end_leftovers(procs: list[Proc], *, timeout_s: float = 5.0) -> None:
    """Kill the descendants the processes were seen with, by PID, and only if
    each is still the process that was seen (psutil checks its creation time);
    then wait until they are gone or zombies (whose parent reaps them)."""
    killed = []
    for proc in procs:
        for process in proc.descendants.values():
            if _alive(process):
                with contextlib.suppress(psutil.Error):
                    process.kill()
                    killed.append(process)
    deadline = time.monotonic() + timeout_s
    while killed and time.monotonic() < deadline:
        killed = [process for process in killed if _alive(process)]
        if killed:
            time.sleep(0.01)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
