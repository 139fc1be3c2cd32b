"""Reading jobs: one per ``POST /tasks`` (a bulk POST, an ``--array``, a
single submit). The ``jobs`` row, its per-state counts and its span are kept
by schema triggers as its tasks change, so reading a page of jobs costs two
indexed queries whatever the jobs' sizes."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from banyan.errors import NotFound
from server.stores.base import Page, Query
from server.stores.sqlite import queries as Q
from server.stores.sqlite.querysql import ColumnMap, scalar
from server.stores.sqlite.rows import chunks, placeholders
from server.stores.sqlite.sqlquery import page_sql

JOB_QUERY_COLUMNS: ColumnMap = {
    "_id": scalar("t.id"),
    "name": scalar("t.name"),
    "owner": scalar("t.owner"),
    "total": scalar("t.total"),
    "_created": scalar("t.created"),
    "time_started": scalar("t.first_started"),
}


def _docs(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    counts: dict[str, dict[str, int]] = {r[0]: {} for r in rows}
    for part in chunks([r[0] for r in rows]):
        for job, state, n in conn.execute(Q.JOB_COUNTS.format(ids=placeholders(len(part))), part):
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
            "time_ended": ended if _ended(counts[job]) else None,
        }
        for job, name, owner, created, total, started, ended in rows
    ]


def _ended(counts: dict[str, int]) -> bool:
    # A job has an end once every task has (a retried task may end and run again).
    return not any(
        counts.get(s) for s in ("inactive", "available", "running", "pending_cancellation")
    )


def find_jobs(conn: sqlite3.Connection, query: Query) -> Page:
    select, count, params = page_sql(query, JOB_QUERY_COLUMNS, table="jobs", columns=Q.JOB_COLUMNS)
    rows = conn.execute(select, params).fetchall()
    (total,) = conn.execute(count, params[:-2]).fetchone()
    return Page(items=_docs(conn, rows), total=total)


def get_job(conn: sqlite3.Connection, job_id: str) -> dict[str, Any]:
    row = conn.execute(Q.JOB_BY_ID, (job_id,)).fetchone()
    if row is None:
        raise NotFound(f"no job with id {job_id}")
    return _docs(conn, [row])[0]
