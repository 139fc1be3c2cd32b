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

It is also the enforcer of the worker's lease (:mod:`worker.lease`), because
it keeps running when the worker is frozen (SIGSTOP, a stalled VM, swapping):
the worker sends ``@TERM_AT KILL_AT`` (CLOCK_MONOTONIC seconds) whenever its
lease grows, and ``@-`` to drop it. Once ``TERM_AT`` has passed un-renewed
the sidecar sends SIGTERM (and SIGCONT) to every registered group, and
SIGKILL once ``KILL_AT`` has passed; a group registered after that is killed
at once. The groups stay registered (a frozen worker cannot reap them, and an
unreaped leader keeps the pgid from being reused) until the worker
unregisters them. Before it signals, the sidecar has read everything already
in the pipe, so an unregistration written before a reap is always seen first.
Without a lease (``@-``, or never sent) nothing is killed before EOF. A
worker frozen between starting a task's shell and writing its ``+PGID`` line
would leave that shell out of the fence, so at each lapse the sidecar also
looks once in ``/proc`` for the worker's children that lead a group of their
own and carry a ``BANYAN_TASK_ID`` (``escapees.unregistered_shells``), and
treats them as registered.

The sidecar tells the worker which groups it fenced, on its stdout, one
``!PGID`` line per group *before* it signals them: so once the worker sees a
task end, the line is already in the pipe, and :meth:`Reaper.fenced` says for
sure whether the lease stopped it. Without this the worker, whose own lease
timer may fire a little later than the sidecar's deadline, reported a task
the sidecar had killed as ``failure (SIGTERM)``, a failure of its own.

Escaped processes (``setsid``, double forks, daemons: see
:mod:`worker.containment`). A registration may carry a tag after the pgid,
``+PGID cg:PATH`` or ``+PGID env:ATTEMPT:TASK``, naming where the rest of the
attempt is. Whenever the sidecar SIGKILLs a group (EOF, or the lease's kill
deadline) it also kills the rest: ``cg:`` writes the attempt cgroup's
``cgroup.kill``; ``env:`` scans ``/proc`` for processes whose environment
carries ``BANYAN_TASK_ID=TASK`` and ``BANYAN_ATTEMPT=ATTEMPT`` (and so were
started by that attempt) and SIGKILLs them, again until none is left (a
bounded number of rounds, as they may fork meanwhile). Why not the worker's
list of pids: after a ``kill -9`` of the worker its orphans are re-parented
to PID 1 and the sidecar, a sibling, could never have been their subreaper;
the list would be as old as the worker's last look, while a scan at the
moment of death misses only a process that re-executed itself with an empty
environment. With cgroups nothing escapes. (Those kills live in
:mod:`worker.escapees`.)

The sidecar's own loop (``Fence``, ``serve``, ``main``) is in :mod:`worker.sidecar`,
re-exported here; ``python -m worker.reaper`` runs it. Both modules import only
the standard library so that it starts fast and cannot fail on the worker's
dependencies.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from worker.sidecar import READY_LINE, Fence, main, serve

logger = logging.getLogger("worker.reaper")  # also when run as __main__

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
        # The sidecar's "!PGID" lines: groups it signalled because the lease lapsed.
        self._notices: int | None = None
        if process.stdout is not None:
            self._notices = process.stdout.fileno()
            os.set_blocking(self._notices, False)
        self._fenced: set[int] = set()
        self._pending = b""

    @classmethod
    def start(cls, *, log_format: str = "text", scope: Path | None = None) -> Reaper:
        """Spawn ``python -m worker.reaper`` and wait until it is reading; it
        logs to the worker's stderr in ``log_format`` (``text`` or ``json``).
        ``scope``: the worker's cgroup of attempt cgroups, removed when it dies."""
        package_root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.reaper", log_format, *([str(scope)] if scope else [])],
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
        # One raw read: the sidecar writes nothing else until a group is fenced.
        ready = os.read(process.stdout.fileno(), len(READY_LINE)) if readable else b""
        if ready != READY_LINE:
            process.stdout.close()
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

    def register(self, pgid: int, tag: str = "") -> None:
        """Kill group ``pgid`` (and what ``tag`` names: ``cg:PATH`` or
        ``env:ATTEMPT:TASK``) if the worker dies before :meth:`unregister`."""
        self._read_notices()
        self._fenced.discard(pgid)  # a notice about an earlier group of that number
        self._registered.add(pgid)
        extra = b" " + os.fsencode(tag) if tag and "\n" not in tag else b""
        self._send(b"+%d%s\n" % (pgid, extra))

    def fenced(self, pgid: int) -> bool:
        """Whether the sidecar has signalled group ``pgid`` for a lapsed lease
        (asked once per group, after its leader ended: the answer is final)."""
        self._read_notices()
        if pgid in self._fenced:
            self._fenced.discard(pgid)
            return True
        return False

    def _read_notices(self) -> None:
        if self._notices is None:
            return
        for _ in range(64):  # bounded; 64 KiB a read
            try:
                data = os.read(self._notices, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the sidecar has gone
                self._notices = None
                return
            lines = (self._pending + data).split(b"\n")
            self._pending = lines.pop()
            for line in lines:
                if line[:1] == b"!" and line[1:].isdigit():
                    self._fenced.add(int(line[1:]))

    def unregister(self, pgid: int) -> None:
        """Forget ``pgid``; call while the group's leader is still unreaped."""
        self._registered.discard(pgid)
        self._send(b"-%d\n" % pgid)

    def set_lease(self, term_at: float | None, kill_at: float | None = None) -> None:
        """SIGTERM every registered group at ``term_at`` and SIGKILL it at
        ``kill_at`` (``time.monotonic()`` values) unless renewed first; ``None``:
        no lease, nothing is killed before the worker exits."""
        if term_at is None:
            self._send(b"@-\n")
        else:
            kill = term_at if kill_at is None else max(term_at, kill_at)
            self._send(b"@%.6f %.6f\n" % (term_at, kill))

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
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._fd = self._notices = None
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


__all__ = ["Fence", "Reaper", "ReaperError", "main", "serve"]


if __name__ == "__main__":
    sys.exit(main())
