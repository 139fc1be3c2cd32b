"""The worker's lease: how long it may go on running tasks without word from
the server, so that a task never runs twice at once.

The server abandons a worker's attempts once it has heard nothing from it for
``worker_timeout_s`` (``T``), and re-queues them. The worker therefore only
counts on what it *knows* the server heard: when an answer comes back to a
frame it sent (the ``heartbeat_ack`` to a numbered heartbeat, the ``welcome``
to its hello, ``assigned`` to a claim, ``accepted``/``refused`` to a report),
the server's clock for this worker was reset no earlier than that frame's
*send* time ``s``, so it abandons nothing before ``s + T``. The lease ends at
``s + T - margin``: SIGTERM to every task group then, SIGKILL ``grace``
later, both done by the reaper sidecar (which runs while the worker itself is
frozen) and by the worker (when it is alive but cut off).

``margin = max(heartbeat period, 20 % of T)``, and the worker sends heartbeats
at least four times per ``T`` (``period = min(heartbeat_interval_s, T / 4)``),
so a healthy worker always holds at least ``T - margin - period >= T / 2`` of
lease, and one heartbeat may be lost or late without a false expiry. The
SIGKILL comes ``margin / 2`` after the lease ends, still ``margin / 2`` before
the earliest moment the server can hand the task to someone else.

Pure arithmetic on a monotonic clock passed in (``time.monotonic`` is
CLOCK_MONOTONIC, one clock for every process of the machine, so the sidecar
can compare the deadlines the worker sends it).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MARGIN_FRACTION = 0.2  # of worker_timeout_s
BEATS_PER_TIMEOUT = 4  # heartbeats sent at least this often per worker_timeout_s
MAX_UNANSWERED = 256  # heartbeats remembered while waiting for their ack


@dataclass(frozen=True)
class Terms:
    """What a ``welcome`` implies for the lease."""

    worker_timeout_s: float
    heartbeat_s: float  # how often this worker sends a heartbeat
    margin_s: float

    @property
    def length_s(self) -> float:
        """From the send time of an answered frame to the SIGTERM."""
        return self.worker_timeout_s - self.margin_s

    @property
    def grace_s(self) -> float:
        """From the SIGTERM to the SIGKILL."""
        return self.margin_s / 2


def terms(worker_timeout_s: float, heartbeat_interval_s: float) -> Terms:
    """The lease terms for the ``worker_timeout_s`` and ``heartbeat_interval_s``
    a server announces (both > 0)."""
    if worker_timeout_s <= 0 or heartbeat_interval_s <= 0:
        raise ValueError("worker_timeout_s and heartbeat_interval_s must be > 0")
    heartbeat = min(heartbeat_interval_s, worker_timeout_s / BEATS_PER_TIMEOUT)
    margin = max(heartbeat, MARGIN_FRACTION * worker_timeout_s)
    return Terms(worker_timeout_s=worker_timeout_s, heartbeat_s=heartbeat, margin_s=margin)


class Lease:
    """The deadline, renewed only forward, by the send time of answered frames."""

    def __init__(self, lease_terms: Terms) -> None:
        self.terms = lease_terms
        self.deadline: float | None = None  # SIGTERM time; None: never granted

    def renew(self, sent_at: float) -> bool:
        """The server answered a frame sent at ``sent_at``; True if the lease grew."""
        deadline = sent_at + self.terms.length_s
        if self.deadline is not None and deadline <= self.deadline:
            return False
        self.deadline = deadline
        return True

    @property
    def kill_at(self) -> float | None:
        return None if self.deadline is None else self.deadline + self.terms.grace_s

    def lapsed(self, now: float) -> bool:
        """True when tasks may no longer run (also before the first grant)."""
        return self.deadline is None or now >= self.deadline

    def remaining(self, now: float) -> float:
        return 0.0 if self.deadline is None else max(0.0, self.deadline - now)


class Beats:
    """Numbered heartbeats waiting for their ack: seq -> send time."""

    def __init__(self) -> None:
        self._next = 1
        self._sent: OrderedDict[int, float] = OrderedDict()

    def sent(self, at: float) -> int:
        """Number a heartbeat sent at ``at`` (call just *before* sending it)."""
        seq = self._next
        self._next += 1
        self._sent[seq] = at
        while len(self._sent) > MAX_UNANSWERED:
            self._sent.popitem(last=False)
        return seq

    def acked(self, seq: int) -> float | None:
        """The send time of heartbeat ``seq``, now answered (None if unknown).
        Older heartbeats still waiting are forgotten: this answer covers them."""
        at = self._sent.pop(seq, None)
        if at is not None:
            for older in [s for s in self._sent if s < seq]:
                del self._sent[older]
        return at

    def clear(self) -> None:
        """A new connection: answers to the old one's heartbeats cannot come."""
        self._sent.clear()
