"""Statistics reads, each a plain function of a connection in one snapshot:
task counts by queue and state, the oldest available task of each queue,
attempts finished recently (throughput) with their wait and run times, and
the counts over one task's continuation tree.

Nothing here scans the tasks table. Migration 3's triggers keep
``task_counts`` per (queue, state), and sum every finished attempt into
``attempt_durations`` per ``SLOT_S`` slot of its end time, its wait
(start - when the task last became available: migration 5's
``available_since``, else its creation) and run (end - start) times in log buckets of ratio
2^(1/8), so a read costs about the same for ten attempts or 300,000.

Throughput counts are exact: the slots inside a window are added up and the
slot straddling its start is counted from the ``attempts`` index. Wait and
run times are over whole slots: the last 15 minutes reaching back to the
start of the slot the window opens in (at most ``SLOT_S`` more), so their
``count`` can exceed ``throughput["15m"]`` by the attempts of those extra
seconds. A percentile is the mean of the bucket holding its rank
(nearest-rank): exact when that bucket's durations are all equal, and always
within the bucket's width (9 %) of the true value.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any

from banyan.errors import NotFound
from banyan.states import SUCCESS, State
from server.domain.percentiles import PERCENTILES as PERCENTILES  # re-exported
from server.domain.percentiles import percentiles as percentiles

SLOT_S = 10  # the slot width written into migration 3's trigger
WINDOWS_S = {"1m": 60, "5m": 300, "15m": 900}
DURATION_WINDOW_S = 900  # wait and run times are over the last 15 minutes
_WAIT, _RUN = 0, 1

_TASK_COUNTS = "SELECT queue, state, n FROM task_counts WHERE n > 0 ORDER BY queue"
_OLDEST_AVAILABLE = (
    "SELECT created FROM tasks INDEXED BY tasks_available_age "
    "WHERE state = 'available' AND queue = ? ORDER BY created LIMIT 1"
)
# ``+slot`` keeps the planner off the slot index (there for pruning): walking
# the table in its (kind, bucket, slot) order groups without a sort.
_SLOT_COUNTS = (
    "SELECT "
    + ", ".join(
        f"coalesce(sum(CASE WHEN slot >= :from_{label} THEN n END), 0)" for label in WINDOWS_S
    )
    + " FROM attempt_durations WHERE kind = 1 AND +slot >= :oldest"
)
_SLOT_BUCKETS = (
    "SELECT kind, sum(n), sum(total_s) FROM attempt_durations WHERE +slot >= ? "
    "GROUP BY kind, bucket"
)
# The attempts of the slots before ``first`` that still end inside the window.
# The slot is computed as the trigger computes it, so no attempt is counted in
# both parts; the upper bound on time_terminated only narrows the index range.
_EDGE = (
    "FROM attempts a WHERE a.time_terminated >= :start AND a.time_terminated < :end "
    "AND CAST(a.time_terminated / 10 AS INTEGER) < :first"
)
_EDGE_COUNT = "SELECT count(*) " + _EDGE
# CROSS JOIN keeps the tree as the outer loop: left to itself, the planner may
# prefer walking all of tasks by state (for the GROUP BY) and probing the tree.
_TREE = """
    WITH RECURSIVE tree(id) AS (
        SELECT id FROM tasks WHERE id = :id
        UNION
        SELECT c.child FROM continuations c JOIN tree ON c.parent = tree.id
    )
    SELECT t.state, count(*),
        coalesce(sum(t.exit_status = :success), 0),
        coalesce(sum(CASE WHEN t.state IN ('terminated', 'cancelled') THEN 0
            ELSE coalesce(t.estimated_runtime, 0) END), 0),
        coalesce(sum(t.state NOT IN ('terminated', 'cancelled')
            AND t.estimated_runtime IS NULL AND t.command IS NOT NULL), 0)
    FROM tree CROSS JOIN tasks t ON t.id = tree.id
    GROUP BY t.state
"""


def overview(conn: sqlite3.Connection, now: float) -> dict[str, Any]:
    """``/stats`` without the workers (the gateway knows which are live)."""
    by_state = dict.fromkeys(State, 0)
    by_queue: dict[str, dict[str, int]] = {}
    rows = conn.execute(_TASK_COUNTS)
    for queue, state, n in rows:
        by_state[state] = by_state.get(state, 0) + n
        by_queue.setdefault(queue, dict.fromkeys(State, 0))[state] = n
    oldest: dict[str, float] = {}
    for queue, counts in by_queue.items():
        if counts[State.AVAILABLE]:
            row = conn.execute(_OLDEST_AVAILABLE, (queue,)).fetchone()
            if row is not None:
                oldest[queue] = row[0]
    throughput = _finished_counts(conn, now)
    waits, runs = _durations(conn, now - DURATION_WINDOW_S)
    return {
        "tasks": {
            "total": sum(by_state.values()),
            "by_state": {str(k): v for k, v in by_state.items()},
            "by_queue": {q: {str(k): v for k, v in c.items()} for q, c in by_queue.items()},
            "oldest_available": oldest,
        },
        "throughput": throughput,
        "wait_time_s": percentiles(waits),
        "run_time_s": percentiles(runs),
    }


def _first_full_slot(start: float) -> int:
    return math.ceil(start / SLOT_S)


def _edge_args(start: float) -> dict[str, float]:
    first = _first_full_slot(start)
    return {"start": start, "end": first * SLOT_S + 1, "first": first}


def _finished_counts(conn: sqlite3.Connection, now: float) -> dict[str, int]:
    """Attempts that ended in each window: its whole slots, then its first one."""
    first = {f"from_{label}": _first_full_slot(now - span) for label, span in WINDOWS_S.items()}
    in_slots = conn.execute(_SLOT_COUNTS, {**first, "oldest": min(first.values())}).fetchone()
    counts = {}
    for (label, span), n in zip(WINDOWS_S.items(), in_slots, strict=True):
        (at_edge,) = conn.execute(_EDGE_COUNT, _edge_args(now - span)).fetchone()
        counts[label] = int(n) + int(at_edge)
    return counts


Points = list[tuple[float, int]]  # (duration, how many attempts)


def _durations(conn: sqlite3.Connection, start: float) -> tuple[Points, Points]:
    """Wait and run times of the attempts of the slots from the one holding
    ``start`` on. (Reading the straddling slot's attempts themselves would
    mean a task lookup each for its wait: thousands at a high finish rate.)"""
    waits: Points = []
    runs: Points = []
    for kind, n, total in conn.execute(_SLOT_BUCKETS, (math.floor(start / SLOT_S),)):
        (waits if kind == _WAIT else runs).append((total / n, n))
    return waits, runs


def tree(conn: sqlite3.Connection, task_id: str) -> dict[str, Any]:
    """``/tasks/{id}/stats``: the task and everything downstream of it over
    continuations, each task counted once (a diamond's join too)."""
    by_state = dict.fromkeys(State, 0)
    succeeded = remaining_s = unestimated = 0.0
    rows = conn.execute(_TREE, {"id": task_id, "success": SUCCESS}).fetchall()
    if not rows:
        raise NotFound(f"no task with id {task_id}")
    for state, n, ok, estimate_s, no_estimate in rows:
        by_state[state] = by_state.get(state, 0) + n
        if state == State.TERMINATED:
            succeeded += ok
        remaining_s += estimate_s
        unestimated += no_estimate
    return {
        "_id": task_id,
        "total": sum(by_state.values()),
        "by_state": {str(k): v for k, v in by_state.items()},
        "succeeded": int(succeeded),
        "failed": by_state[State.TERMINATED] - int(succeeded),
        "estimated_remaining_s": round(remaining_s, 3),
        "unestimated": int(unestimated),
    }
