"""Attempts inside a PostgreSQL transaction: claims, reports (progress, the
end of an attempt), abandonment, and memory-usage samples. The claim policy
is ``server.domain.claims``; who may report is ``server.domain.access``; what
an end does is ``server.domain.transitions``.

A claim scans its candidates without locking them, and locks only the tasks
the policy chose, when it starts them (``FOR UPDATE SKIP LOCKED``, still
available and unchanged since the scan): a task another transaction is
claiming (or changing) is passed over, and scanned past in a next round, so
two servers never hand out one task twice, never wait on each other's
claims, and never keep each other's workers from the tasks they leave.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from banyan.errors import Conflict, NotFound
from banyan.resources import BUILTIN_RESOURCES, Amounts, Resources
from banyan.states import ABANDONED, ACTIVE_STATES, Actor, State, is_abandonment
from banyan.tokens import Caller, Role
from server.domain import access, claims
from server.domain import events as E
from server.domain import transitions as T
from server.domain.dependencies import Result
from server.domain.documents import row_to_doc
from server.stores.base import ClaimedAttempt
from server.stores.postgres import graph
from server.stores.postgres import queries as Q
from server.stores.postgres.db import Tx
from server.stores.postgres.rows import dumps, loads
from server.stores.postgres.tokens import check_not_revoked, check_revoked

SYSTEM = Caller(name="server", role=Role.ADMIN)

# A claim candidate: its request as plain numbers, as stored, and its row.
Candidate = tuple[Amounts, dict[str, Any], Sequence[Any]]
Packer = Callable[
    [Iterable[Candidate], Amounts, int, Callable[[Candidate], Amounts]], list[Candidate]
]


async def claim(
    tx: Tx,
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
    """``Store.claim``: what the claim policy picks, then queued attempts; the
    claiming token is checked first (``tokens.check_not_revoked``), in the
    same round trip as the first scan."""
    if limit <= 0 or not queues:
        await check_not_revoked(tx, token)
        return []
    attempts = await _take(
        tx, queues, now, remaining_s, Amounts.of(free), limit, claims.pack,
        worker=worker, token=token, queued=False, check=True,
    )  # fmt: skip
    if prefetch > 0 and capacity is not None:
        attempts += await _take(
            tx, queues, now, remaining_s, Amounts.of(capacity), prefetch, claims.pack_queued,
            worker=worker, token=token, queued=True,
        )  # fmt: skip
    return attempts


async def _take(
    tx: Tx,
    queues: Sequence[str],
    now: float,
    remaining_s: float | None,
    within: Amounts,
    limit: int,
    pack: Packer,
    *,
    worker: str,
    token: str,
    queued: bool,
    check: bool = False,
) -> list[ClaimedAttempt]:
    """Scan, pack, start: the tasks another transaction took between the
    scan and the start (another server's claim) are passed over in a new
    scan, at most ``CLAIM_ROUNDS`` times, so a claim that lost a race still
    takes what is left: an empty answer means nothing fits, and the worker
    then waits for a push."""
    taken: list[ClaimedAttempt] = []
    passed: list[str] = []
    for _ in range(CLAIM_ROUNDS):
        chosen = await _scan(
            tx, queues, within, limit - len(taken), now, remaining_s, pack, passed,
            token=token if check and not passed else None,
        )  # fmt: skip
        started = await _start(tx, chosen, worker=worker, token=token, now=now, queued=queued)
        taken += started
        got = {attempt["task"] for attempt in started}
        lost = [c for c in chosen if c[2][0] not in got]
        if not lost or len(taken) >= limit:
            break
        passed += [c[2][0] for c in lost]
        if not queued:  # prefetch packs against the whole capacity each time
            for request, _, row in chosen:
                if row[0] in got:
                    within = within.minus(request)
    return taken


# How many scans one claim makes at most when other servers' claims take
# what it chose (each lost race passes those tasks over in the next scan).
CLAIM_ROUNDS: Final = 4


async def _scan(
    tx: Tx,
    queues: Sequence[str],
    within: Amounts,
    limit: int,
    now: float,
    remaining_s: float | None,
    pack: Packer,
    passed: Sequence[str],
    *,
    token: str | None = None,
) -> list[Candidate]:
    """The candidates the policy packs, leaving out ``passed``; with ``token``,
    that token is checked too."""
    bound = claims.prefilter(within)
    begun, lifetime = claims.time_bounds(now, remaining_s)
    args = [
        list(queues),
        bound.cores,
        int(min(bound.memory, 2**62)),
        int(min(bound.gpus, 2**62)),
        begun,
        lifetime,
        claims.scan_limit(limit),
        list(passed),
    ]
    coreless = bound.cores <= Q.CORELESS_CORES  # a full worker: its own small index
    if token is None:
        rows = await tx.fetch(_CORELESS if coreless else _CANDIDATES, *args)
    else:
        statement = _CORELESS_CHECKED if coreless else _CANDIDATES_CHECKED
        checked = await tx.fetch(statement, *args, token)
        if not checked:
            await check_not_revoked(tx, token)
        else:
            check_revoked(token, checked[0][0])
        rows = [row[1:] for row in checked]
    return pack((_candidate(row) for row in rows), within, limit, lambda c: c[0])


_CANDIDATES = Q.CLAIM_CANDIDATES.format(order=claims.ORDER)
_CANDIDATES_CHECKED = Q.CLAIM_CANDIDATES_CHECKED.format(order=claims.ORDER)
_CORELESS = Q.CLAIM_CANDIDATES_CORELESS.format(order=claims.ORDER)
_CORELESS_CHECKED = Q.CLAIM_CANDIDATES_CORELESS_CHECKED.format(order=claims.ORDER)


async def _start(
    tx: Tx,
    chosen: Sequence[Candidate],
    *,
    worker: str,
    token: str,
    now: float,
    queued: bool,
) -> list[ClaimedAttempt]:
    """Start (or queue) an attempt of each chosen task that is still to be
    had (``START_ATTEMPTS``): one round trip for all; returns those."""
    if not chosen:
        return []
    ids = [row[0] for _, _, row in chosen]
    etags = [row[-1] for _, _, row in chosen]
    keys = [secrets.token_urlsafe(16) for _ in chosen]
    # A queued attempt has no start time until the worker says its process started.
    started = dict(
        await tx.fetch(
            Q.START_ATTEMPTS, worker, None if queued else now, now, ids, token, queued, keys, etags
        )
    )
    attempts = []
    for (_, request, row), key in zip(chosen, keys, strict=True):
        task_id, *_, name, queue, command, env, cwd, grace, time_limit, _etag = row
        attempt = started.get(task_id)
        if attempt is None:  # another transaction took it (or changed it) since the scan
            continue
        task = T.TaskRef(task_id, State.AVAILABLE, name, queue)
        tx.add_events(now, [T.claimed(task, worker=worker, attempt=attempt)])
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
    return attempts


async def tasks_ahead(
    tx: Tx, task_id: str, priority: int, queues: Sequence[str], limit: int
) -> list[Amounts]:
    if not queues:
        return []
    rows = await tx.fetch(
        Q.TASKS_AHEAD.format(order=claims.ORDER), list(queues), priority, task_id, limit
    )
    return [_candidate(row)[0] for row in rows]


def _candidate(row: Sequence[Any]) -> Candidate:
    _id, cores, memory, gpus, resources_json, *_ = row
    request: dict[str, Any] = loads(resources_json)
    custom = {k: v for k, v in request.items() if k not in BUILTIN_RESOURCES}
    return Amounts(cores, memory, gpus, custom), request, row


async def _current(
    tx: Tx,
    task_id: str,
    execution_key: str,
    caller: Caller,
    worker: str | None = None,
    *,
    token: str | None = None,
) -> Any:
    """The task's current attempt (its row locked), if ``execution_key`` names
    it and the caller (and the connected ``worker``) holds it; with ``token``,
    that token is checked first (``tokens.check_not_revoked``), in the same
    round trip."""
    if token is None:
        row = await tx.fetchrow(Q.CURRENT_ATTEMPT, task_id)
    else:
        checked = await tx.fetchrow(Q.CURRENT_ATTEMPT_CHECKED, task_id, token)
        if checked is None:
            await check_not_revoked(tx, token)
            row = None
        else:
            check_revoked(token, checked[0])
            row = checked[1:]
    if row is None:
        raise NotFound(f"no task with id {task_id}")
    current = access.CurrentAttempt(task_id, row[1], row[6], row[7], row[10])
    if not access.names_current(current, execution_key):
        found = await tx.fetchval(Q.ATTEMPT_OF_KEY, task_id, execution_key)
        current = dataclasses.replace(current, key_attempt=found)
    access.check_report(current, execution_key, caller, worker)
    return row


async def report_progress(
    tx: Tx, task_id: str, execution_key: str, progress: dict[str, Any], caller: Caller, now: float
) -> None:
    row = await _current(tx, task_id, execution_key, caller)
    state, attempt, _, _, name, queue = row[:6]
    if state not in ACTIVE_STATES:
        raise Conflict(f"task {task_id} is {state}: the attempt has ended")
    await tx.execute(Q.SET_PROGRESS, dumps(progress), now, task_id)
    event = E.task_progress(task_id, name=name, queue=queue, attempt=attempt, progress=progress)
    tx.add_events(now, [event])


async def finish(
    tx: Tx,
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
    token: str | None = None,
) -> dict[str, Any] | None:
    """The attempt ended (``transitions.end_attempt``): the task's document
    after it, or None when this exact report was applied already. With
    ``token``, that token is checked first (``tokens.check_not_revoked``)."""
    row = await _current(tx, task_id, execution_key, caller, worker, token=token)
    state, attempt, retry_count, max_retry, name, queue = row[:6]
    ended, recorded, abandons, max_abandons = row[8], row[9], row[12], row[13]
    if ended is not None:
        if recorded == exit_status:
            return None
        raise Conflict(f"attempt {attempt} of task {task_id} already ended with '{recorded}'")
    if not is_abandonment(exit_status):
        abandons = max_abandons = 0
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
    *columns, continuations, open_edges = await tx.fetchrow(
        Q.END_ATTEMPT_AND_TASK,
        now,
        exit_status,
        exit_code,
        usage_json,
        task_id,
        attempt,
        outcome.state.value,
        int(outcome.retry),
        int(outcome.abandoned),
    )
    tx.add_events(now, [end.event])
    # Settling changes the continuations' rows, never this task's: its
    # document is final. Without an open edge there is nothing to settle (an
    # edge added meanwhile waits on this task's row lock, then sees it ended).
    if outcome.release and open_edges:
        await graph.settle(tx, [(task_id, Result.SUCCEEDED)], origin=task_id, now=now)
    if outcome.cascade_cancel and open_edges:
        await graph.settle(tx, [(task_id, Result.FAILED)], origin=task_id, now=now)
    return row_to_doc(tuple(columns), list(continuations))


async def finish_as_system(
    tx: Tx, task_id: str, key: str, exit_status: str, now: float, *, undelivered: bool = False
) -> None:
    """End an attempt on the server's own authority (a lost worker, a dropped attempt)."""
    await finish(
        tx,
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


async def abandon_worker(tx: Tx, worker: str, now: float) -> list[str]:
    """Each attempt the worker held ends abandoned (a queued one goes back uncounted)."""
    abandoned = []
    for task_id, key, queued in await tx.fetch(Q.OPEN_ATTEMPTS, worker):
        if queued:
            await unqueue(tx, task_id, key, caller=SYSTEM, now=now)
        else:
            await finish_as_system(tx, task_id, key, ABANDONED, now)
            abandoned.append(task_id)
    return abandoned


async def mark_started(
    tx: Tx,
    task_id: str,
    execution_key: str,
    *,
    time: float,
    caller: Caller,
    worker: str | None,
    now: float,
) -> None:
    """A queued attempt's process started at ``time``."""
    row = await _current(tx, task_id, execution_key, caller, worker)
    state, attempt, ended, queued = row[0], row[1], row[8], row[11]
    if ended is not None or state not in ACTIVE_STATES:
        raise Conflict(f"attempt {attempt} of task {task_id} has ended")
    if not queued:
        return  # already started: a repeated report is harmless
    await tx.execute(Q.MARK_STARTED, time, now, task_id, attempt)


async def unqueue(
    tx: Tx,
    task_id: str,
    execution_key: str,
    *,
    caller: Caller,
    now: float,
    worker: str | None = None,
) -> None:
    """A queued attempt handed back before it started (``transitions.unqueue``)."""
    row = await _current(tx, task_id, execution_key, caller, worker)
    state, attempt, name, queue, ended, queued = row[0], row[1], row[4], row[5], row[8], row[11]
    if ended is not None:
        raise Conflict(f"attempt {attempt} of task {task_id} has ended")
    if not queued:
        raise Conflict(f"attempt {attempt} of task {task_id} has started: it cannot be returned")
    end = T.unqueue(T.TaskRef(task_id, state, name, queue), attempt=attempt)
    exit_status = T.unqueued_status(state)
    await tx.execute(Q.END_ATTEMPT, now, exit_status, None, None, task_id, attempt)
    await tx.execute(
        Q.END_TASK_ATTEMPT, end.outcome.state.value, exit_status, None, now, 0, now, 0, task_id
    )
    tx.add_events(now, [end.event])
    if end.outcome.cascade_cancel:
        await graph.settle(tx, [(task_id, Result.FAILED)], origin=task_id, now=now)


async def add_memory_usage(
    tx: Tx, records: Sequence[tuple[str, float, int, float | None]], caller: Caller, now: float
) -> int:
    """Store samples; a worker only for tasks whose current attempt it holds."""
    for task_id, time, rss, cpu in records:
        row = await tx.fetchrow(Q.USAGE_ROW, task_id)
        if row is None:
            raise NotFound(f"no task with id {task_id}")
        state, attempt, token = row
        access.check_usage_report(caller, task_id, state, token)
        await tx.execute(Q.INSERT_USAGE, task_id, attempt, time, rss, cpu)
        usage = E.task_usage(task_id, attempt=attempt, time=time, rss=rss, cpu_percent=cpu)
        tx.add_events(now, [usage])
    return len(records)
