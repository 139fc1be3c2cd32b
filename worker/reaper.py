"""A sidecar process that kills the worker's tasks if the worker dies.

The worker starts it once (:meth:`Reaper.start`). Its stdin is a pipe whose
only write end the worker holds; the runner writes one line per event:
``+PGID`` when a task's process group starts and ``-PGID`` just before its
leader is reaped. The kernel closes that write end whenever the worker exits,
cleanly or by ``SIGKILL``, so the sidecar reads EOF, SIGKILLs every group still
registered and exits. It needs no timer and no polling, and costs the worker
one small ``write`` per registration.

The sidecar runs in its own session and ignores SIGINT, SIGTERM and SIGHUP: a
Ctrl-C or ``kill -TERM`` aimed at the worker's group asks the *worker* to
drain, and the guard must stay up while it does. It exits only on EOF (or
SIGKILL).

Ordering matters for pid reuse: the runner unregisters a group while its
leader is still an unreaped zombie, which keeps the number from being reused,
and the sidecar handles lines in order before it handles EOF, so it never
signals a number that has since gone to someone else.

This module imports only the standard library so that ``python -m
worker.reaper`` starts fast and cannot fail on the worker's dependencies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)

READY_LINE = b"ready\n"
START_TIMEOUT_S = 30.0


class ReaperError(RuntimeError):
    """The sidecar could not be started."""


class Reaper:
    """The worker's handle on the sidecar. Not thread-safe; use from the event loop."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdin is not None
        self._process = process
        self._fd: int | None = process.stdin.fileno()
        self._registered: set[int] = set()

    @classmethod
    def start(cls) -> Reaper:
        """Spawn ``python -m worker.reaper`` and wait until it is reading."""
        package_root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.reaper"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,
            # Tasks are spawned with close_fds, so only this process holds the
            # write end: its EOF means exactly "the worker is gone".
            close_fds=True,
        )
        assert process.stdout is not None
        # A bounded wait: a sidecar that cannot even import must fail the
        # worker's start, not hang it.
        readable, _, _ = select.select([process.stdout], [], [], START_TIMEOUT_S)
        ready = process.stdout.readline() if readable else b""
        process.stdout.close()
        if ready != READY_LINE:
            process.kill()
            process.wait(timeout=START_TIMEOUT_S)
            assert process.stdin is not None
            process.stdin.close()
            raise ReaperError(f"the reaper sidecar did not start (exit code {process.returncode})")
        return cls(process)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return self._fd is not None and self._process.poll() is None

    @property
    def registered(self) -> frozenset[int]:
        return frozenset(self._registered)

    def register(self, pgid: int) -> None:
        """Kill group ``pgid`` if the worker dies before :meth:`unregister`."""
        self._registered.add(pgid)
        self._send(b"+%d\n" % pgid)

    def unregister(self, pgid: int) -> None:
        """Forget ``pgid``; call while the group's leader is still unreaped."""
        self._registered.discard(pgid)
        self._send(b"-%d\n" % pgid)

    def _send(self, line: bytes) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, line)  # < PIPE_BUF bytes: atomic, never partial
        except OSError:  # EPIPE: it died (someone SIGKILLed it)
            logger.error(
                "the reaper sidecar (pid %d) has gone: tasks may outlive the worker", self.pid
            )
            self._fd = None

    def close(self, *, timeout_s: float = 5.0) -> None:
        """Stop the sidecar; it kills any group still registered (normally none)."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._fd = None
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> Reaper:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- the sidecar itself -------------------------------------------------------------


def _kill_groups(pgids: set[int]) -> None:
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def serve(fd: int) -> set[int]:
    """Read ``+PGID``/``-PGID`` lines from ``fd`` until EOF; return what is left."""
    registered: set[int] = set()
    pending = b""
    while True:
        try:
            data = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not data:
            return registered
        lines = (pending + data).split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line[:1] not in (b"+", b"-") or not line[1:].isdigit():
                continue  # not ours: never let a bad line take the guard down
            if line[:1] == b"+":
                registered.add(int(line[1:]))
            else:
                registered.discard(int(line[1:]))


def main() -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    os.write(sys.stdout.fileno(), READY_LINE)
    # Nobody reads fd 1 after "ready": point it at /dev/null rather than
    # closing it under Python's own sys.stdout.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    _kill_groups(serve(sys.stdin.fileno()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
