"""Keyed submits (``server.domain.idempotency``) in one transaction: look the
caller's key up, replay the stored answer or create the tasks and store the
answer beside them, and prune the answers older than the retention window."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from banyan.models import TaskCreate
from banyan.tokens import Caller
from server.domain import idempotency as idem
from server.stores.base import CreatedTask
from server.stores.sqlite import queries as Q
from server.stores.sqlite import tasks
from server.stores.sqlite.rows import dumps, loads


def create_tasks_once(
    conn: sqlite3.Connection,
    items: Sequence[TaskCreate],
    caller: Caller,
    now: float,
    submission: idem.Submission,
    respond: Callable[[list[CreatedTask]], tuple[int, Any]],
    *,
    job_name: str | None = None,
) -> idem.Answer:
    oldest = now - submission.retention_s
    row = conn.execute(Q.IDEMPOTENCY_FIND, (caller.name, submission.key, oldest)).fetchone()
    if row is not None:
        stored_hash, status, response = row
        idem.check_same_request(stored_hash, submission)
        return idem.Answer(status=status, body=loads(response), replayed=True)
    created = tasks.create_tasks(conn, items, caller, now, job_name=job_name)
    status, body = respond(created)
    conn.execute(Q.IDEMPOTENCY_PRUNE, (oldest,))
    conn.execute(
        Q.IDEMPOTENCY_SAVE,
        (caller.name, submission.key, submission.request_hash, status, _text(body), now),
    )
    return idem.Answer(status=status, body=body, replayed=False)


def _text(body: Any) -> str:
    return body.text if isinstance(body, idem.Encoded) else dumps(body)
