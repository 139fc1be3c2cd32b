"""The history of one fault scenario and the checker over it.

A scenario records what it did and what it saw: every submit request (its
client-chosen ids, and whether a 2xx came back), every execution of a task
as the task itself wrote it down (``marks``: start, end, and whether another
execution of the same task was still alive when it started, found with
``flock``), the attempts the server recorded (worker, execution key, status),
every cancel and its answer, every stale-report probe and its answer, the
``seq`` of every event each subscriber received, and the processes left
behind. :func:`check` turns that into the scorecard's figures.

Everything here is a pure function of the history, so ``test_history.py``
feeds it hand-made histories that contain each violation.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ABANDONED = "abandoned (worker unreachable)"


# --- what is recorded ---------------------------------------------------------------


@dataclass(frozen=True)
class Execution:
    """One run of a task's command, as the command recorded it (wall clock)."""

    task: str
    attempt: int
    pid: int
    start: float
    end: float | None = None  # None: it never finished its body (killed, cancelled)
    overlapped: bool = False  # another execution of the task held its lock at the start


@dataclass(frozen=True)
class Submit:
    ids: tuple[str, ...]
    sent: float
    acked: bool  # a 2xx response was received
    status: int | None = None  # None: no response (connection refused, reset, server died)


@dataclass(frozen=True)
class ServerAttempt:
    task: str
    attempt: int
    worker: str
    key: str
    started: float
    ended: float | None
    exit_status: str | None


@dataclass(frozen=True)
class Cancel:
    task: str
    sent: float
    answered: float
    status: int | None
    state: str | None  # the task's state in a 2xx answer


@dataclass(frozen=True)
class Probe:
    """A report sent with the execution key of a superseded attempt."""

    task: str
    attempt: int
    status: int | None


@dataclass
class History:
    submits: list[Submit] = field(default_factory=list)
    executions: list[Execution] = field(default_factory=list)
    attempts: list[ServerAttempt] = field(default_factory=list)
    present: set[str] = field(default_factory=set)  # ids the server has at the end
    final_states: dict[str, str] = field(default_factory=dict)
    cancels: list[Cancel] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    # (task, attempt) -> exit status, read when the server declared the worker lost
    abandoned: dict[tuple[str, int], str | None] = field(default_factory=dict)
    parents: dict[str, list[str]] = field(default_factory=dict)  # child -> its parents
    feeds: list[Feed] = field(default_factory=list)
    reference_seqs: list[int] = field(default_factory=list)  # every seq the server has
    orphans: list[int] = field(default_factory=list)


@dataclass
class Feed:
    """One subscriber: ``since`` of its first connection and every seq it got, in order."""

    since: int
    seqs: list[int] = field(default_factory=list)
    connections: int = 0


# --- parsing the marks -------------------------------------------------------------


def parse_marks(lines: Iterable[Sequence[str]]) -> list[Execution]:
    """Lines ``TASK ATTEMPT PID start|end|overlap TIME`` into executions, in start order.

    A shell's PID identifies one execution: ``overlap`` and ``end`` attach to
    the ``start`` of the same (task, attempt, pid). Torn or foreign lines are skipped.
    """
    starts: dict[tuple[str, int, int], float] = {}
    ends: dict[tuple[str, int, int], float] = {}
    overlaps: set[tuple[str, int, int]] = set()
    for parts in lines:
        if len(parts) != 5:
            continue
        task, attempt, pid, what, stamp = parts
        try:
            key = (task, int(attempt), int(pid))
            when = float(stamp)
        except ValueError:
            continue
        if what == "start":
            starts[key] = when
        elif what == "end":
            ends[key] = when
        elif what == "overlap":
            overlaps.add(key)
    out = [
        Execution(task, attempt, pid, start, ends.get((task, attempt, pid)), key in overlaps)
        for key, start in starts.items()
        for task, attempt, pid in [key]
    ]
    out.sort(key=lambda e: (e.start, e.task, e.attempt))
    return out


def read_executions(path: Path) -> list[Execution]:
    if not path.exists():
        return []
    return parse_marks(line.split() for line in path.read_text().splitlines())


# --- the checks --------------------------------------------------------------------


def requested_ids(history: History) -> set[str]:
    return {task for submit in history.submits for task in submit.ids}


def acknowledged_lost(history: History) -> list[str]:
    """Acknowledged submits whose tasks the server no longer has."""
    acked = {task for submit in history.submits if submit.acked for task in submit.ids}
    return sorted(acked - history.present)


def unexpected_executions(history: History) -> list[tuple[Execution, str]]:
    """Executions that should not have happened, each with the reason."""
    requested = requested_ids(history)
    attempts = {(a.task, a.attempt) for a in history.attempts}
    cancelled_at: dict[str, float] = {}
    for cancel in history.cancels:
        if cancel.status is not None and 200 <= cancel.status < 300 and cancel.state == "cancelled":
            # The server said it is cancelled (it was not running): nothing may start after.
            cancelled_at[cancel.task] = min(
                cancelled_at.get(cancel.task, math.inf), cancel.answered
            )
    succeeded: dict[str, float] = {}
    for e in history.executions:
        if e.end is not None:
            succeeded[e.task] = min(succeeded.get(e.task, math.inf), e.end)
    out: list[tuple[Execution, str]] = []
    seen: set[tuple[str, int]] = set()
    for e in history.executions:
        if e.task not in requested:
            out.append((e, "a task nobody submitted"))
        elif (e.task, e.attempt) not in attempts:
            out.append((e, f"attempt {e.attempt} is not in the server's history"))
        elif (e.task, e.attempt) in seen:
            out.append((e, f"attempt {e.attempt} ran more than once"))
        elif e.start > cancelled_at.get(e.task, math.inf):
            out.append((e, "started after its cancel was acknowledged"))
        else:
            late = [
                p for p in history.parents.get(e.task, []) if succeeded.get(p, math.inf) > e.start
            ]
            if late:
                out.append((e, f"started before its parent {late[0]} succeeded"))
        seen.add((e.task, e.attempt))
    return out


def duplicate_concurrent(history: History) -> list[tuple[Execution, Execution | None]]:
    """Executions that started while another execution of the same task was alive:
    found by the task's lock (ground truth, also for killed ones) or by
    overlapping start-end intervals."""
    out: list[tuple[Execution, Execution | None]] = []
    by_task: dict[str, list[Execution]] = defaultdict(list)
    for e in history.executions:
        by_task[e.task].append(e)
    for runs in by_task.values():
        runs.sort(key=lambda e: e.start)
        for i, e in enumerate(runs):
            earlier = [o for o in runs[:i] if o.end is not None and o.start <= e.start < o.end]
            if e.overlapped or earlier:
                out.append((e, earlier[0] if earlier else None))
    return out


def stale_writes_accepted(history: History) -> list[str]:
    """Reports on superseded attempts that the server took: a probe answered 2xx,
    or an attempt abandoned when its worker was lost whose record changed later."""
    out = [
        f"probe on {p.task} attempt {p.attempt} answered {p.status}"
        for p in history.probes
        if p.status is not None and 200 <= p.status < 300
    ]
    final = {(a.task, a.attempt): a.exit_status for a in history.attempts}
    for key, status in history.abandoned.items():
        if key in final and final[key] != status:
            out.append(f"{key[0]} attempt {key[1]}: {status!r} became {final[key]!r}")
    return out


def feed_violations(feed: Feed, reference: Sequence[int]) -> dict[str, list[int]]:
    """Gaps (a seq the server has, after ``since`` and up to the last one the
    subscriber could have seen, that it never got), duplicates, and seqs out of order."""
    seen = Counter(feed.seqs)
    last = max(reference) if reference else feed.since
    gaps = [s for s in reference if feed.since < s <= last and s not in seen]
    duplicates = sorted(s for s, n in seen.items() if n > 1)
    disorder = [b for a, b in zip(feed.seqs, feed.seqs[1:], strict=False) if b < a]
    return {"gaps": gaps, "duplicates": duplicates, "out_of_order": disorder}


def feed_gaps(history: History) -> int:
    """Missing, repeated or reordered events over every subscriber."""
    total = 0
    for feed in history.feeds:
        found = feed_violations(feed, history.reference_seqs)
        total += sum(len(v) for v in found.values())
    return total


def stuck_tasks(history: History, *, finished: Iterable[str]) -> list[str]:
    """Acknowledged tasks that are not in one of the ``finished`` states at the end."""
    done = set(finished)
    acked = {task for submit in history.submits if submit.acked for task in submit.ids}
    return sorted(t for t in acked if history.final_states.get(t) not in done)


def never_ran(history: History) -> list[str]:
    """Acknowledged tasks the server says ended (``terminated``) that never
    executed at all: their work was dropped, not done."""
    ran = {e.task for e in history.executions}
    acked = {task for submit in history.submits if submit.acked for task in submit.ids}
    return sorted(t for t in acked if history.final_states.get(t) == "terminated" and t not in ran)


def percentiles(values: Sequence[float]) -> tuple[float, float]:
    """(p50, p99) by linear interpolation; NaNs when there is nothing."""
    if not values:
        return (math.nan, math.nan)
    ordered = sorted(values)

    def at(p: float) -> float:
        k = (len(ordered) - 1) * p / 100
        lo = int(k)
        hi = min(lo + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)

    return (at(50), at(99))


# --- the figures -------------------------------------------------------------------

ZERO_FIGURES = (
    "acknowledged_lost",
    "unexpected_executions",
    "duplicate_concurrent",
    "stale_writes_accepted",
    "orphans",
    "feed_gaps",
    "twins",
)


@dataclass
class FaultResult:
    """One row of the scorecard."""

    fault: str
    tasks: int = 0  # acknowledged (unanswered submits are in details)
    faults_injected: int = 0
    acknowledged_lost: int = 0
    unexpected_executions: int = 0
    duplicate_concurrent: int = 0
    stale_writes_accepted: int = 0
    stale_checked: int = 0  # probes sent + abandoned attempts watched (0: not exercised)
    orphans: int = 0
    feed_gaps: int = 0
    twins: int = 0  # a submit's task made more than once (a retried POST)
    stuck: int = 0  # acknowledged, and not ended when the run was over
    never_ran: int = 0  # acknowledged, ended ``terminated``, never executed
    loss_detect_s: tuple[float, float] = (math.nan, math.nan)
    recovery_s: tuple[float, float] = (math.nan, math.nan)
    cancel_latency_s: tuple[float, float] = (math.nan, math.nan)
    restart_s: tuple[float, float] = (math.nan, math.nan)
    wall_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)  # examples of each violation

    def violations(self) -> dict[str, int]:
        """The figures that must be zero and are not (``stuck`` included)."""
        names = (*ZERO_FIGURES, "stuck", "never_ran")
        figures = {name: int(getattr(self, name)) for name in names}
        return {k: v for k, v in figures.items() if v}


def check(
    fault: str, history: History, *, finished: Iterable[str] = ("terminated", "cancelled")
) -> FaultResult:
    """The zero figures of ``history``, with up to five examples of each violation."""
    lost = acknowledged_lost(history)
    unexpected = unexpected_executions(history)
    duplicates = duplicate_concurrent(history)
    stale = stale_writes_accepted(history)
    stuck = stuck_tasks(history, finished=finished)
    unrun = never_ran(history)
    feeds = [feed_violations(f, history.reference_seqs) for f in history.feeds]
    result = FaultResult(
        fault=fault,
        tasks=len({t for s in history.submits if s.acked for t in s.ids}),
        acknowledged_lost=len(lost),
        unexpected_executions=len(unexpected),
        duplicate_concurrent=len(duplicates),
        stale_writes_accepted=len(stale),
        stale_checked=len(history.probes) + len(history.abandoned),
        orphans=len(history.orphans),
        feed_gaps=feed_gaps(history),
        stuck=len(stuck),
        never_ran=len(unrun),
    )
    examples: dict[str, Any] = {
        "acknowledged_lost": lost[:5],
        "unexpected_executions": [(e.task, e.attempt, why) for e, why in unexpected[:5]],
        "duplicate_concurrent": [
            (e.task, e.attempt, None if o is None else o.attempt) for e, o in duplicates[:5]
        ],
        "stale_writes_accepted": stale[:5],
        "orphans": history.orphans[:5],
        "feed": [{k: v[:5] for k, v in f.items() if v} for f in feeds if any(f.values())][:5],
        "stuck": [(t, history.final_states.get(t)) for t in stuck[:5]],
        "never_ran": [
            (t, [a.exit_status for a in history.attempts if a.task == t]) for t in unrun[:5]
        ],
    }
    result.details = {k: v for k, v in examples.items() if v}
    return result
