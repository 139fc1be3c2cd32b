"""Attempts inside a transaction: claims (which tasks a worker gets), reports
(progress, the end of an attempt), abandonment of a lost worker's attempts,
and memory-usage samples. Every report names its attempt by the random
``execution_key`` handed out with the claim; a stale key is refused.
"""

from __future__ import annotations

import dataclasses
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from banyan.errors import Conflict, NotFound
from banyan.resources import BUILTIN_RESOURCES, Amounts, Resources
from banyan.states import (
    ABANDONED,
    ACTIVE_STATES,
    Actor,
    State,
    is_abandonment,
)
from banyan.tokens import Caller, Role
from server.domain import access, claims
from server.domain import events as E
from server.domain import transitions as T
from server.domain.dependencies import Result
from server.stores.base import ClaimedAttempt
from server.stores.sqlite import graph
from server.stores.sqlite import queries as Q
from server.stores.sqlite.rows import dumps, loads, placeholders, store_events


def claim(
    conn: sqlite3.Connection,
    *,
    worker: str,
    token: str,
    free: Resources,
    queues: Sequence[str],
    limit: int,
    now: float,
    remaining_s: float | None = None,
    prefetch: int = 0,
    capacity: Resources | None = None,
) -> list[ClaimedAttempt]:
    """Hand out what the claim policy (``server.domain.claims``) picks from the
    available tasks in ``queues`` for the free share ``free``, those begun and
    fitting the worker's remaining lifetime ``remaining_s``; then, with
    ``prefetch``, up to that many more as queued attempts under the same
    bounds, each fitting the worker's whole ``capacity`` (``claims.pack_queued``)."""
    if limit <= 0 or not queues:
        return []
    chosen = _scan(conn, queues, Amounts.of(free), limit, now, remaining_s, claims.pack)
    attempts = _start_attempts(conn, chosen, worker=worker, token=token, now=now, queued=False)
    if prefetch > 0 and capacity is not None:
        # Queued attempts: each must fit the worker's whole capacity, under the same bounds.
        whole = Amounts.of(capacity)
        queued = _scan(conn, queues, whole, prefetch, now, remaining_s, claims.pack_queued)
        attempts += _start_attempts(conn, queued, worker=worker, token=token, now=now, queued=True)
    return attempts


# A claim candidate: its request as plain numbers, as stored, and its row.
Candidate = tuple[Amounts, dict[str, Any], Sequence[Any]]
# claims.pack or claims.pack_queued: which candidates, within what, how many.
Packer = Callable[
    [Iterable[Candidate], Amounts, int, Callable[[Candidate], Amounts]], list[Candidate]
]


def _scan(
    conn: sqlite3.Connection,
    queues: Sequence[str],
    within: Amounts,
    limit: int,
    now: float,
    remaining_s: float | None,
    pack: Packer,
) -> list[Candidate]:
    """The available tasks in ``queues`` that ``pack`` picks for ``within``:
    begun, fitting the remaining lifetime, in the claim order."""
    # The plain columns let SQLite skip what cannot fit even the whole of
    # ``within``; the policy then packs on plain numbers (no model per row).
    bound = claims.prefilter(within)
    coreless = bound.cores <= Q.CORELESS_CORES  # a full worker: its own small index
    statement = Q.CLAIM_CANDIDATES_CORELESS if coreless else Q.CLAIM_CANDIDATES
    cursor = conn.execute(
        statement.format(queues=placeholders(len(queues)), order=claims.ORDER),
        (
            *queues,
            bound.cores,
            bound.memory,
            bound.gpus,
            *claims.time_bounds(now, remaining_s),
            claims.scan_limit(limit),
        ),
    )
    try:
        # Row by row from the cursor: with one core free the first fitting row
        # ends the scan, instead of loading scan_limit(limit) full rows for it.
        return pack((_candidate(row) for row in cursor), within, limit, lambda c: c[0])
    finally:
        cursor.close()  # done before the same connection updates the rows it read


def _start_attempts(
    conn: sqlite3.Connection,
    chosen: Sequence[Candidate],
    *,
    worker: str,
    token: str,
    now: float,
    queued: bool,
) -> list[ClaimedAttempt]:
    attempts = []
    events = []
    for _, request, row in chosen:
        task_id, *_, name, queue, command, env, cwd, grace, time_limit = row
        key = secrets.token_urlsafe(16)
        if queued:  # no start time until the worker says the process started
            (attempt,) = conn.execute(Q.START_QUEUED_ATTEMPT, (worker, now, task_id)).fetchone()
            conn.execute(Q.INSERT_QUEUED_ATTEMPT, (task_id, attempt, key, worker, token, now))
        else:
            (attempt,) = conn.execute(Q.START_ATTEMPT, (worker, now, now, task_id)).fetchone()
            conn.execute(Q.INSERT_ATTEMPT, (task_id, attempt, key, worker, token, now))
        task = T.TaskRef(task_id, State.AVAILABLE, name, queue)
        events.append(T.claimed(task, worker=worker, attempt=attempt))
        attempts.append(
            ClaimedAttempt(
                task=task_id,
                attempt=attempt,
                execution_key=key,
                requested_resources=request,
                name=name,
                command=command,
                env=loads(env),
                cwd=cwd,
                max_termination_time=grace,
                time_limit=time_limit,
                queued=queued,
            )
        )
    store_events(conn, now, events)  # in one statement
    return attempts


def tasks_ahead(
    conn: sqlite3.Connection, task_id: str, priority: int, queues: Sequence[str], limit: int
) -> list[Amounts]:
    """What the tasks a claim from ``queues`` would consider before ``task_id`` ask for."""
    if not queues:
        return []
    rows = conn.execute(
        Q.TASKS_AHEAD.format(queues=placeholders(len(queues)), order=claims.ORDER),
        (*queues, priority, priority, task_id, limit),
    ).fetchall()
    return [_candidate(row)[0] for row in rows]


def _candidate(row: Sequence[Any]) -> Candidate:
    """A claim candidate row with its request, as stored and as plain numbers."""
    _id, cores, memory, gpus, resources_json, *_ = row
    request: dict[str, Any] = loads(resources_json)
    custom = {k: v for k, v in request.items() if k not in BUILTIN_RESOURCES}
    return Amounts(cores, memory, gpus, custom), request, row


def _current_attempt(
    conn: sqlite3.Connection,
    task_id: str,
    execution_key: str,
    caller: Caller,
    worker: str | None = None,
) -> tuple[Any, ...]:
    """The task's current attempt, if ``execution_key`` names it and the caller
    (and, from the gateway, the connected ``worker``) holds it (``access.check_report``)."""
    row = conn.execute(Q.CURRENT_ATTEMPT, (task_id,)).fetchone()
    if row is None:
        raise NotFound(f"no task with id {task_id}")
    current = access.CurrentAttempt(task_id, row[1], row[6], row[7], row[10])
    if not access.names_current(current, execution_key):
        found = conn.execute(Q.ATTEMPT_OF_KEY, (task_id, execution_key)).fetchone()
        current = dataclasses.replace(current, key_attempt=None if found is None else found[0])
    access.check_report(current, execution_key, caller, worker)
    return tuple(row[:10])


def report_progress(
    conn: sqlite3.Connection,
    task_id: str,
    execution_key: str,
    progress: dict[str, Any],
    caller: Caller,
    now: float,
) -> None:
    state, attempt, _, _, name, queue, *_ = _current_attempt(conn, task_id, execution_key, caller)
    if state not in ACTIVE_STATES:
        raise Conflict(f"task {task_id} is {state}: the attempt has ended")
    conn.execute(Q.SET_PROGRESS, (dumps(progress), now, task_id))
    store_events(
        conn,
        now,
        [E.task_progress(task_id, name=name, queue=queue, attempt=attempt, progress=progress)],
    )


def finish(
    conn: sqlite3.Connection,
    task_id: str,
    execution_key: str,
    *,
    exit_status: str,
    exit_code: int | None,
    usage: dict[str, Any] | None,
    caller: Caller,
    now: float,
    actor: Actor = Actor.WORKER,
    worker: str | None = None,
    undelivered: bool = False,
) -> bool:
    """The attempt ended. Returns False when this exact report was already
    applied (a repeated report is harmless), True otherwise.

    ``undelivered``: the worker never got the attempt (the server died, or
    the connection broke, between committing the claim and the worker
    receiving it), so nothing ran: a running task goes back to available
    without counting a retry."""
    row = _current_attempt(conn, task_id, execution_key, caller, worker)
    state, attempt, retry_count, max_retry, name, queue, _, _, ended, recorded = row
    if ended is not None:
        if recorded == exit_status:
            return False
        raise Conflict(f"attempt {attempt} of task {task_id} already ended with '{recorded}'")
    abandons, max_abandons = (
        conn.execute(Q.ABANDON_BUDGET, (task_id,)).fetchone()
        if is_abandonment(exit_status)
        else (0, 0)
    )
    end = T.end_attempt(
        T.TaskRef(task_id, state, name, queue),
        attempt=attempt,
        retry_count=retry_count,
        max_retry_count=max_retry,
        exit_status=exit_status,
        actor=actor,
        undelivered=undelivered,
        abandon_count=abandons,
        max_abandon_count=max_abandons,
    )
    outcome = end.outcome
    usage_json = None if usage is None else dumps(usage)
    conn.execute(Q.END_ATTEMPT, (now, exit_status, exit_code, usage_json, task_id, attempt))
    conn.execute(
        Q.END_TASK_ATTEMPT,
        (outcome.state, exit_status, exit_code, now, int(outcome.retry), now, task_id),
    )
    if outcome.abandoned:
        conn.execute(Q.COUNT_ABANDON, (task_id,))
    store_events(conn, now, [end.event])
    if outcome.release:
        graph.settle(conn, [(task_id, Result.SUCCEEDED)], origin=task_id, now=now)
    if outcome.cascade_cancel:
        graph.settle(conn, [(task_id, Result.FAILED)], origin=task_id, now=now)
    return True


SYSTEM = Caller(name="server", role=Role.ADMIN)


def finish_as_system(
    conn: sqlite3.Connection,
    task_id: str,
    key: str,
    exit_status: str,
    now: float,
    *,
    undelivered: bool = False,
) -> None:
    """End an attempt on the server's own authority (a lost worker, a dropped attempt)."""
    finish(
        conn,
        task_id,
        key,
        exit_status=exit_status,
        exit_code=None,
        usage=None,
        caller=SYSTEM,
        now=now,
        actor=Actor.MONITOR,
        undelivered=undelivered,
    )


def abandon_worker(conn: sqlite3.Connection, worker: str, now: float) -> list[str]:
    """A worker was lost: each attempt it held ends ``abandoned`` and follows the
    retry rule. Returns the task ids affected."""
    rows = conn.execute(Q.OPEN_ATTEMPTS, (worker,)).fetchall()
    queued = set(conn.execute(Q.OPEN_QUEUED_ATTEMPTS, (worker,)).fetchall())
    for task_id, key in rows:
        if (task_id, key) in queued:  # never started: back to the queue, uncounted
            unqueue(conn, task_id, key, caller=SYSTEM, now=now)
        else:
            finish_as_system(conn, task_id, key, ABANDONED, now)
    return [task_id for task_id, key in rows if (task_id, key) not in queued]


def is_queued(conn: sqlite3.Connection, task_id: str, attempt: int) -> bool:
    row = conn.execute(Q.ATTEMPT_QUEUED, (task_id, attempt)).fetchone()
    return row is not None and bool(row[0])


def mark_started(
    conn: sqlite3.Connection,
    task_id: str,
    execution_key: str,
    *,
    time: float,
    caller: Caller,
    worker: str | None,
    now: float,
) -> None:
    """A queued attempt's process started at ``time``: that is its ``time_started``."""
    state, attempt, *_rest, ended, _ = _current_attempt(
        conn, task_id, execution_key, caller, worker
    )
    if ended is not None or state not in ACTIVE_STATES:
        raise Conflict(f"attempt {attempt} of task {task_id} has ended")
    if not is_queued(conn, task_id, attempt):
        return  # already started: a repeated report is harmless
    conn.execute(Q.MARK_ATTEMPT_STARTED, (time, task_id, attempt))
    conn.execute(Q.MARK_TASK_STARTED, (time, now, task_id))


def unqueue(
    conn: sqlite3.Connection,
    task_id: str,
    execution_key: str,
    *,
    caller: Caller,
    now: float,
    worker: str | None = None,
) -> None:
    """A queued attempt handed back (or its worker gone) before it started:
    ``transitions.unqueue`` (no retry, no abandonment counted)."""
    row = _current_attempt(conn, task_id, execution_key, caller, worker)
    state, attempt, _, _, name, queue, _, _, ended, _ = row
    if ended is not None:
        raise Conflict(f"attempt {attempt} of task {task_id} has ended")
    if not is_queued(conn, task_id, attempt):
        raise Conflict(f"attempt {attempt} of task {task_id} has started: it cannot be returned")
    end = T.unqueue(T.TaskRef(task_id, state, name, queue), attempt=attempt)
    exit_status = T.unqueued_status(state)
    conn.execute(Q.END_ATTEMPT, (now, exit_status, None, None, task_id, attempt))
    conn.execute(Q.END_TASK_ATTEMPT, (end.outcome.state, exit_status, None, now, 0, now, task_id))
    store_events(conn, now, [end.event])
    if end.outcome.cascade_cancel:  # cancelled unstarted: its continuations settle as failed
        graph.settle(conn, [(task_id, Result.FAILED)], origin=task_id, now=now)


def add_memory_usage(
    conn: sqlite3.Connection,
    records: Sequence[tuple[str, float, int, float | None]],
    caller: Caller,
    now: float,
) -> int:
    """Store samples ``(task, time, resident_memory_bytes, cpu_percent)``; a
    worker may only report on tasks whose current attempt it holds."""
    stored = 0
    for task_id, time, rss, cpu in records:
        row = conn.execute(Q.USAGE_ROW, (task_id,)).fetchone()
        if row is None:
            raise NotFound(f"no task with id {task_id}")
        state, attempt, token = row
        access.check_usage_report(caller, task_id, state, token)
        conn.execute(Q.INSERT_USAGE, (task_id, attempt, time, rss, cpu))
        usage = E.task_usage(task_id, attempt=attempt, time=time, rss=rss, cpu_percent=cpu)
        store_events(conn, now, [usage])
        stored += 1
    return stored
