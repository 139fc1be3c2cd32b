"""The reaper sidecar itself, run by ``python -m worker.reaper``: it reads the
worker's ``+PGID`` / ``-PGID`` / ``@TERM_AT KILL_AT`` lines (``serve``), enforces
the lease (``Fence``) and kills every group still registered at EOF (``main``).
The protocol and why it is built this way are in :mod:`worker.reaper`. Only the
standard library is imported here, so the sidecar starts fast."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Callable

from worker.escapees import kill_tagged, remove_scope, unregistered_shells

logger = logging.getLogger("worker.reaper")  # the name its lines always had

READY_LINE = b"ready\n"
READS_BEFORE_ENFORCING = 64  # bounded, so a chatty worker cannot starve the fence
# After each read the sidecar pauses this long (never past a lease deadline)
# before it waits on the pipe again: the worker's lines of that time pile up
# in the pipe and are read at once, instead of each write waking this process
# (which then took the CPU from the worker: ~0.15 ms of the worker's event
# loop per line on a busy 2-core machine). The cost: EOF, the worker's death,
# is acted on up to this much later.
COALESCE_S = 0.01


def _kill_groups(pgids: set[int], tags: dict[int, bytes] | None = None) -> None:
    _signal_groups(pgids, signal.SIGKILL)
    kill_tagged([tags[p] for p in pgids if tags and p in tags])


def _signal_groups(pgids: set[int] | list[int], signum: int) -> None:
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)


def _no_notice(pgids: list[int]) -> None:
    pass


class Fence:
    """The sidecar's state: registered groups and the lease's two deadlines.

    ``notify(pgids)`` is called just before the first signal to each group
    under a lapsed lease (the sidecar writes ``!PGID`` lines to the worker).
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        notify: Callable[[list[int]], None] = _no_notice,
        strays: Callable[[set[int]], set[int]] | None = None,
    ) -> None:
        self.clock = clock
        self.notify = notify
        # The worker's task shells it had not registered yet when the lease
        # lapsed (``escapees.unregistered_shells``): fenced as if registered.
        self.strays = strays
        self._strays_seen: float | None = None  # the lapse they were looked for at
        self.registered: set[int] = set()
        self.tags: dict[int, bytes] = {}  # pgid → where the rest of its attempt is
        self.term_at: float | None = None
        self.kill_at: float | None = None
        self._termed: set[int] = set()  # signalled under the current lease
        self._killed: set[int] = set()

    def line(self, line: bytes) -> None:
        """One line of the worker's; anything malformed is ignored."""
        head, rest = line[:1], line[1:]
        number, _, tag = rest.partition(b" ")
        if head in (b"+", b"-") and number.isdigit():
            pgid = int(number)
            if head == b"+":
                self.registered.add(pgid)
                if tag:
                    self.tags[pgid] = tag
            else:
                self.registered.discard(pgid)
                self.tags.pop(pgid, None)
                self._termed.discard(pgid)
                self._killed.discard(pgid)
        elif head == b"@":
            self._lease(rest)

    def _lease(self, rest: bytes) -> None:
        if rest == b"-":
            self.term_at = self.kill_at = None
            return
        try:
            term_at, kill_at = (float(x) for x in rest.split())
        except ValueError:
            return
        if term_at != term_at or kill_at != kill_at:  # NaN
            return
        self.term_at, self.kill_at = term_at, max(term_at, kill_at)
        if term_at > self.clock():  # renewed in time: a later lapse signals again
            self._termed.clear()
            self._killed.clear()

    def timeout(self) -> float | None:
        """Seconds until something is due (0: now), None when nothing ever is."""
        due = []
        if self.term_at is not None and (self.registered - self._termed or self._strays_due()):
            due.append(self.term_at)
        if self.kill_at is not None and self.registered - self._killed:
            due.append(self.kill_at)
        return max(0.0, min(due) - self.clock()) if due else None

    def _strays_due(self) -> bool:
        """A lapse of the lease not yet looked at for unregistered shells."""
        return self.strays is not None and self._strays_seen != self.term_at

    def enforce(self) -> None:
        """Signal what the lease says is due."""
        now = self.clock()
        if self.term_at is not None and now >= self.term_at:
            strays = self.strays
            if strays is not None and self._strays_seen != self.term_at:  # one scan a lapse
                self._strays_seen = self.term_at
                self.registered |= strays(self.registered)
            groups = sorted(self.registered - self._termed)
            if groups:
                logger.error(
                    "lease lapsed at %.3f (now %.3f): SIGTERM to task groups %s",
                    self.term_at,
                    now,
                    groups,
                )
                self.notify(groups)
                _signal_groups(groups, signal.SIGTERM)
                _signal_groups(groups, signal.SIGCONT)  # a stopped group acts on it only then
                self._termed.update(groups)
        if self.kill_at is not None and now >= self.kill_at:
            groups = sorted(self.registered - self._killed)
            if groups:
                logger.error(
                    "lease lapsed at %.3f (now %.3f): SIGKILL to task groups %s",
                    self.term_at,
                    now,
                    groups,
                )
                self.notify([g for g in groups if g not in self._termed])
                _kill_groups(set(groups), self.tags)
                self._killed.update(groups)
                self._termed.update(groups)


def serve(
    fd: int,
    fence: Fence | None = None,
    *,
    coalesce_s: float = COALESCE_S,
    pause: Callable[[float], None] = time.sleep,
) -> set[int]:
    """Read ``+PGID``/``-PGID``/``@...`` lines from ``fd`` until EOF, enforcing
    the lease meanwhile; return the groups still registered. After each read
    it ``pause``s up to ``coalesce_s`` (see :data:`COALESCE_S`)."""
    fence = Fence() if fence is None else fence
    pending = b""
    while True:
        try:
            readable, _, _ = select.select([fd], [], [], fence.timeout())
        except InterruptedError:
            continue
        for _ in range(READS_BEFORE_ENFORCING if readable else 0):
            try:
                data = os.read(fd, 65536)
            except InterruptedError:
                continue
            if not data:
                return fence.registered
            lines = (pending + data).split(b"\n")
            pending = lines.pop()
            for line in lines:
                fence.line(line)
            if not select.select([fd], [], [], 0)[0]:
                break  # the pipe is empty: everything written so far is applied
        fence.enforce()
        if readable and coalesce_s > 0:
            due = fence.timeout()
            pause(coalesce_s if due is None else min(coalesce_s, due))


def _notifier(fd: int) -> Callable[[list[int]], None]:
    """Write ``!PGID`` lines to the worker, never blocking: a frozen worker
    does not read, and the fence must go on (a full pipe drops the notice)."""
    os.set_blocking(fd, False)

    def notify(pgids: list[int]) -> None:
        if not pgids:
            return
        with contextlib.suppress(OSError):  # full (EAGAIN), or the worker has gone
            os.write(fd, b"".join(b"!%d\n" % pgid for pgid in pgids))

    return notify


def main() -> int:
    if sys.argv[1:2] == ["json"]:
        from banyan.logs import setup_logging  # stdlib only, like this module

        setup_logging(log_format="json")
    else:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s worker.reaper: %(message)s"
        )
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    out = sys.stdout.fileno()
    os.write(out, READY_LINE)
    # fd 1 is now the notice channel, written with os.write only.
    worker = os.getppid()  # the worker started this process
    fence = Fence(notify=_notifier(out), strays=lambda known: unregistered_shells(worker, known))
    _kill_groups(serve(sys.stdin.fileno(), fence), fence.tags)
    if len(sys.argv) > 2:
        remove_scope(sys.argv[2])

    return 0
