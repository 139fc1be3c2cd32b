"""Reads on PostgreSQL that only look: collection pages (the query compiler
with the PostgreSQL dialect, placeholders numbered), jobs, statistics.

There are no counter tables (see ``migrations``): counts come from the
indexes (``tasks_state``, ``tasks_job``, ``attempts_terminated``), and the
wait and run times are exact over the attempts that ended in the last 15
minutes (``server.domain.percentiles``)."""

from __future__ import annotations

import re
from typing import Any

from banyan.errors import NotFound
from banyan.states import SUCCESS, State
from server.domain.percentiles import percentiles
from server.stores.base import Page, Query
from server.stores.columns import MEMORY_COLUMNS, TASK_QUERY_COLUMNS
from server.stores.postgres import queries as Q
from server.stores.postgres.db import Tx
from server.stores.postgres.rows import docs_for_rows
from server.stores.querysql import POSTGRES, ColumnMap, compile_order, compile_where, scalar

WINDOWS_S = {"1m": 60, "5m": 300, "15m": 900}
DURATION_WINDOW_S = 900
_PLACEHOLDER = re.compile(r"\?")


def number_placeholders(sql: str) -> str:
    """``?`` → ``$1``, ``$2``… (the compiler writes ``?`` and no other question mark)."""
    count = 0

    def next_one(_match: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"${count}"

    return _PLACEHOLDER.sub(next_one, sql)


def page_sql(
    query: Query, column_map: ColumnMap, *, table: str, columns: str
) -> tuple[str, str, list[Any]]:
    """``(select, count, params)``; ``count`` takes ``params[:-2]``."""
    where, params = compile_where(query.where, column_map, POSTGRES)
    order = compile_order(query.sort, column_map, tiebreak="t.id", dialect=POSTGRES)
    select = f"SELECT {columns} FROM {table} t WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?"
    count = f"SELECT count(*) FROM {table} t WHERE {where}"
    offset = (query.page - 1) * query.max_results
    return (
        number_placeholders(select),
        number_placeholders(count),
        [
            *params,
            query.max_results,
            offset,
        ],
    )


_TASK_COLUMNS = ", ".join(f"t.{c.strip()}" for c in Q.TASK_BY_ID.split(","))


async def find_tasks(tx: Tx, query: Query) -> Page:
    select, count, params = page_sql(
        query, TASK_QUERY_COLUMNS, table="tasks", columns=_TASK_COLUMNS
    )
    rows = await tx.fetch(select, *params)
    total = await tx.fetchval(count, *params[:-2])
    return Page(items=await docs_for_rows(tx, rows), total=total)


async def find_memory_usage(tx: Tx, query: Query) -> Page:
    columns = "t.id, t.task_id, t.attempt, t.time, t.resident_memory_bytes, t.cpu_percent"
    select, count, params = page_sql(query, MEMORY_COLUMNS, table="memory_usage", columns=columns)
    items = [
        {
            "_id": str(i),
            "task": t,
            "attempt": a,
            "time": tm,
            "resident_memory_bytes": r,
            "cpu_percent": cpu,
        }
        for i, t, a, tm, r, cpu in await tx.fetch(select, *params)
    ]
    return Page(items=items, total=await tx.fetchval(count, *params[:-2]))


# --- jobs -------------------------------------------------------------------------
JOB_QUERY_COLUMNS: ColumnMap = {
    "_id": scalar("t.id"),
    "name": scalar("t.name"),
    "owner": scalar("t.owner"),
    "total": scalar("(SELECT count(*) FROM tasks x WHERE x.job = t.id)"),
    "_created": scalar("t.created"),
    "time_started": scalar("(SELECT min(x.time_started) FROM tasks x WHERE x.job = t.id)"),
}
_JOB_SELECT = (
    "t.id, t.name, t.owner, t.created, "
    "(SELECT count(*) FROM tasks x WHERE x.job = t.id), "
    "(SELECT min(x.time_started) FROM tasks x WHERE x.job = t.id), "
    "(SELECT max(x.time_terminated) FROM tasks x WHERE x.job = t.id)"
)
_JOB_COUNTS = (
    "SELECT job, state, count(*) FROM tasks WHERE job = ANY($1::text[]) GROUP BY job, state"
)
_OPEN_STATES = ("inactive", "available", "running", "pending_cancellation")


async def _job_docs(tx: Tx, rows: list[Any]) -> list[dict[str, Any]]:
    counts: dict[str, dict[str, int]] = {r[0]: {} for r in rows}
    if rows:
        for job, state, n in await tx.fetch(_JOB_COUNTS, [r[0] for r in rows]):
            counts[job][state] = n
    return [
        {
            "_id": job,
            "name": name,
            "owner": owner,
            "_created": created,
            "total": total,
            "counts": counts[job],
            "time_started": started,
            # A job has an end once every task has.
            "time_ended": None if any(counts[job].get(s) for s in _OPEN_STATES) else ended,
        }
        for job, name, owner, created, total, started, ended in rows
    ]


async def find_jobs(tx: Tx, query: Query) -> Page:
    select, count, params = page_sql(query, JOB_QUERY_COLUMNS, table="jobs", columns=_JOB_SELECT)
    rows = await tx.fetch(select, *params)
    total = await tx.fetchval(count, *params[:-2])
    return Page(items=await _job_docs(tx, rows), total=total)


async def get_job(tx: Tx, job_id: str) -> dict[str, Any]:
    rows = await tx.fetch(f"SELECT {_JOB_SELECT} FROM jobs t WHERE t.id = $1", job_id)
    if not rows:
        raise NotFound(f"no job with id {job_id}")
    return (await _job_docs(tx, rows))[0]


# --- statistics ----------------------------------------------------------------------
_TASK_COUNTS = "SELECT queue, state, count(*) FROM tasks GROUP BY queue, state ORDER BY queue"
_OLDEST_AVAILABLE = "SELECT queue, min(created) FROM tasks WHERE state = 'available' GROUP BY queue"
_FINISHED = (
    "SELECT "
    + ", ".join(f"count(*) FILTER (WHERE time_terminated >= ${i + 1})" for i in range(3))
    + " FROM attempts WHERE time_terminated >= $3"
)
_DURATIONS = (
    "SELECT greatest(time_started - coalesce(available_from, time_started), 0), "
    "greatest(time_terminated - time_started, 0) FROM attempts WHERE time_terminated >= $1"
)
_TREE = """
    WITH RECURSIVE tree(id) AS (
        SELECT id FROM tasks WHERE id = $1
        UNION
        SELECT c.child FROM continuations c JOIN tree ON c.parent = tree.id
    )
    SELECT t.state, count(*),
        count(*) FILTER (WHERE t.exit_status = $2),
        coalesce(sum(CASE WHEN t.state IN ('terminated', 'cancelled') THEN 0
            ELSE coalesce(t.estimated_runtime, 0) END), 0),
        count(*) FILTER (WHERE t.state NOT IN ('terminated', 'cancelled')
            AND t.estimated_runtime IS NULL AND t.command IS NOT NULL)
    FROM tree JOIN tasks t ON t.id = tree.id
    GROUP BY t.state
"""


async def overview(tx: Tx, now: float) -> dict[str, Any]:
    """``/stats`` without the workers."""
    by_state = dict.fromkeys(State, 0)
    by_queue: dict[str, dict[str, int]] = {}
    for queue, state, n in await tx.fetch(_TASK_COUNTS):
        by_state[state] = by_state.get(state, 0) + n
        by_queue.setdefault(queue, dict.fromkeys(State, 0))[state] = n
    oldest = {queue: created for queue, created in await tx.fetch(_OLDEST_AVAILABLE)}
    spans = list(WINDOWS_S.values())
    finished = await tx.fetchrow(_FINISHED, *(now - span for span in spans))
    rows = await tx.fetch(_DURATIONS, now - DURATION_WINDOW_S)
    return {
        "tasks": {
            "total": sum(by_state.values()),
            "by_state": {str(k): v for k, v in by_state.items()},
            "by_queue": {q: {str(k): v for k, v in c.items()} for q, c in by_queue.items()},
            "oldest_available": oldest,
        },
        "throughput": {label: int(n) for label, n in zip(WINDOWS_S, finished, strict=True)},
        "wait_time_s": percentiles((float(w), 1) for w, _ in rows),
        "run_time_s": percentiles((float(r), 1) for _, r in rows),
    }


async def tree(tx: Tx, task_id: str) -> dict[str, Any]:
    """``/tasks/{id}/stats`` over the task and everything downstream of it."""
    by_state = dict.fromkeys(State, 0)
    succeeded = unestimated = 0
    remaining_s = 0.0
    rows = await tx.fetch(_TREE, task_id, SUCCESS)
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
