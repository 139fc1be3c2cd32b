"""``SqliteStore``: the Store on one SQLite file in WAL mode. The tasks,
attempts, memory usage and statistics are here; the event feed, workers and
tokens are mixed in from ``store_events``, ``store_workers`` and ``store_tokens``.

Writes run through ``Database.write`` (group commit, one hop per batch);
reads through ``Database.read`` (one hop per request, a consistent snapshot).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from banyan.errors import BanyanError, NotFound, Unauthorized
from banyan.models import BulkPatchItem, ContinuationEdit, MemoryUsage, TaskCreate, TaskPatch
from banyan.resources import Amounts, Resources
from banyan.states import Actor
from banyan.tokens import Caller
from server.domain.idempotency import Answer, Submission
from server.stores.base import (
    ClaimedAttempt,
    CreatedTask,
    Health,
    ItemResult,
    Page,
    Query,
    Store,
)
from server.stores.sqlite import (
    attempts,
    graph,
    idempotency,
    jobs,
    schema,
    tasks,
)
from server.stores.sqlite import queries as Q
from server.stores.sqlite.db import Database
from server.stores.sqlite.rows import TASK_COLUMNS, docs_for_rows, get_doc, loads
from server.stores.sqlite.sqlquery import MEMORY_COLUMNS, TASK_QUERY_COLUMNS, page_sql
from server.stores.sqlite.store_events import EventMethods
from server.stores.sqlite.store_tokens import TokenMethods
from server.stores.sqlite.store_workers import WorkerMethods

Clock = Callable[[], float]


class SqliteStore(EventMethods, WorkerMethods, TokenMethods, Store):
    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "FULL",
        batch_max_ops: int = 512,
        busy_timeout_ms: int = 10_000,
        require_if_match: bool = False,
        max_log_bytes: int = 1 << 20,
        clock: Clock = time.time,
    ) -> None:
        self.max_log_bytes = max_log_bytes
        self.db = Database(
            Path(path),
            synchronous=synchronous,
            busy_timeout_ms=busy_timeout_ms,
            batch_max_ops=batch_max_ops,
        )
        self._require_if_match = require_if_match
        self._clock = clock

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def health(self) -> Health:
        def probe(conn: sqlite3.Connection) -> Health:
            (version,) = conn.execute(Q.SCHEMA_VERSION).fetchone()
            (mode,) = conn.execute(Q.JOURNAL_MODE).fetchone()
            return Health(ok=True, schema_version=version, details={"journal_mode": mode})

        return await self.db.read(probe)

    # --- tasks -----------------------------------------------------------------

    async def create_tasks(
        self, items: Sequence[TaskCreate], caller: Caller, *, job_name: str | None = None
    ) -> list[CreatedTask]:
        now = self._clock()
        return await self.db.write(
            lambda conn: tasks.create_tasks(conn, items, caller, now, job_name=job_name)
        )

    async def find_jobs(self, query: Query) -> Page:
        return await self.db.read(lambda conn: jobs.find_jobs(conn, query))

    async def get_job(self, job_id: str) -> dict[str, Any]:
        return await self.db.read(lambda conn: jobs.get_job(conn, job_id))

    async def create_tasks_once(
        self,
        items: Sequence[TaskCreate],
        caller: Caller,
        submission: Submission,
        respond: Callable[[list[CreatedTask]], tuple[int, Any]],
        *,
        job_name: str | None = None,
    ) -> Answer:
        now = self._clock()
        return await self.db.write(
            lambda conn: idempotency.create_tasks_once(
                conn, items, caller, now, submission, respond, job_name=job_name
            )
        )

    async def tasks_ahead(
        self, task_id: str, priority: int, queues: Sequence[str], limit: int
    ) -> list[Amounts]:
        return await self.db.read(
            lambda conn: attempts.tasks_ahead(conn, task_id, priority, queues, limit)
        )

    async def get_task(self, task_id: str) -> dict[str, Any]:
        return await self.db.read(lambda conn: get_doc(conn, task_id))

    async def find_tasks(self, query: Query) -> Page:
        select, count, params = page_sql(
            query, TASK_QUERY_COLUMNS, table="tasks", columns=TASK_COLUMNS
        )

        def run(conn: sqlite3.Connection) -> Page:
            rows = conn.execute(select, params).fetchall()
            (total,) = conn.execute(count, params[:-2]).fetchone()
            return Page(items=docs_for_rows(conn, rows), total=total)

        return await self.db.read(run)

    async def update_task(
        self, task_id: str, patch: TaskPatch, caller: Caller, *, if_match: str | None = None
    ) -> dict[str, Any]:
        now = self._clock()
        return await self.db.write(
            lambda conn: tasks.update_task(
                conn,
                task_id,
                patch,
                caller,
                now,
                if_match=if_match,
                require_if_match=self._require_if_match,
            )
        )

    async def update_tasks(
        self, items: Sequence[BulkPatchItem], caller: Caller
    ) -> list[ItemResult]:
        # Each item is its own operation (its own savepoint), queued together
        # so they normally share one transaction and one fsync.
        async def one(item: BulkPatchItem) -> ItemResult:
            patch = TaskPatch.model_validate(
                item.model_dump(exclude_unset=True, exclude={"id", "etag"})
            )
            try:
                doc = await self.update_task(item.id, patch, caller, if_match=item.etag)
            except BanyanError as exc:
                return ItemResult(task_id=item.id, error=exc)
            return ItemResult(task_id=item.id, doc=doc)

        return list(await asyncio.gather(*(one(item) for item in items)))

    async def edit_continuations(
        self, edits: Sequence[ContinuationEdit], caller: Caller, *, add: bool
    ) -> None:
        now = self._clock()
        change = graph.add_edges if add else graph.remove_edges

        def run(conn: sqlite3.Connection) -> None:
            for i, edit in enumerate(edits):
                pairs = [(t, v) for t in edit.targets for v in edit.values]
                change(conn, pairs, caller, now, issue_key=f"{i}.values")

        await self.db.write(run)

    async def history(self, task_id: str) -> list[dict[str, Any]]:
        def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            if conn.execute(Q.TASK_EXISTS, (task_id,)).fetchone() is None:
                raise NotFound(f"no task with id {task_id}")
            rows = conn.execute(Q.HISTORY, (task_id,)).fetchall()
            return [
                {
                    "attempt": a,
                    "worker": w,
                    "time_started": s,
                    "time_terminated": e,
                    "exit_status": st,
                    "exit_code": code,
                    "usage": loads(u),
                }
                for a, w, s, e, st, code, u in rows
            ]

        return await self.db.read(run)

    # --- attempts --------------------------------------------------------------

    async def claim(
        self,
        *,
        worker: str,
        token: str,
        free: Resources,
        queues: Sequence[str],
        limit: int,
        remaining_s: float | None = None,
        prefetch: int = 0,
        capacity: Resources | None = None,
    ) -> list[ClaimedAttempt]:
        now = self._clock()

        def run(conn: sqlite3.Connection) -> list[ClaimedAttempt]:
            check_not_revoked(conn, token)
            return attempts.claim(
                conn,
                worker=worker,
                token=token,
                free=free,
                queues=queues,
                limit=limit,
                now=now,
                remaining_s=remaining_s,
                prefetch=prefetch,
                capacity=capacity,
            )

        return await self.db.write(run)

    async def start_queued(
        self, task_id: str, execution_key: str, *, time: float, caller: Caller, worker: str
    ) -> None:
        now = self._clock()
        await self.db.write(
            lambda conn: attempts.mark_started(
                conn, task_id, execution_key, time=time, caller=caller, worker=worker, now=now
            )
        )

    async def return_queued(
        self, task_id: str, execution_key: str, *, caller: Caller, worker: str
    ) -> None:
        now = self._clock()
        await self.db.write(
            lambda conn: attempts.unqueue(
                conn, task_id, execution_key, caller=caller, now=now, worker=worker
            )
        )

    async def next_begin(self) -> float | None:
        now = self._clock()

        def run(conn: sqlite3.Connection) -> float | None:
            (found,) = conn.execute(Q.NEXT_BEGIN, (now,)).fetchone()
            return None if found is None else float(found)

        return await self.db.read(run)

    async def finish(
        self,
        task_id: str,
        execution_key: str,
        *,
        exit_status: str,
        exit_code: int | None,
        usage: dict[str, Any] | None,
        caller: Caller,
        actor: Actor = Actor.WORKER,
        worker: str | None = None,
    ) -> None:
        now = self._clock()

        def run(conn: sqlite3.Connection) -> None:
            check_not_revoked(conn, caller.name)
            attempts.finish(
                conn,
                task_id,
                execution_key,
                exit_status=exit_status,
                exit_code=exit_code,
                usage=usage,
                caller=caller,
                now=now,
                actor=actor,
                worker=worker,
            )

        await self.db.write(run)

    async def report_progress(
        self, task_id: str, execution_key: str, progress: dict[str, Any], caller: Caller
    ) -> None:
        now = self._clock()
        await self.db.write(
            lambda conn: attempts.report_progress(
                conn, task_id, execution_key, progress, caller, now
            )
        )

    async def abandon_worker(self, worker: str) -> list[str]:
        now = self._clock()
        return await self.db.write(lambda conn: attempts.abandon_worker(conn, worker, now))

    # --- memory usage ----------------------------------------------------------

    async def add_memory_usage(self, records: Sequence[MemoryUsage], caller: Caller) -> int:
        now = self._clock()
        rows = [(r.task, r.time, r.resident_memory_bytes, r.cpu_percent) for r in records]
        return await self.db.write(lambda conn: attempts.add_memory_usage(conn, rows, caller, now))

    async def find_memory_usage(self, query: Query) -> Page:
        select, count, params = page_sql(
            query,
            MEMORY_COLUMNS,
            table="memory_usage",
            columns="id, task_id, attempt, time, resident_memory_bytes, cpu_percent",
        )

        def run(conn: sqlite3.Connection) -> Page:
            rows = conn.execute(select, params).fetchall()
            (total,) = conn.execute(count, params[:-2]).fetchone()
            items = [
                {
                    "_id": str(i),
                    "task": t,
                    "attempt": a,
                    "time": tm,
                    "resident_memory_bytes": r,
                    "cpu_percent": cpu,
                }
                for i, t, a, tm, r, cpu in rows
            ]
            return Page(items=items, total=total)

        return await self.db.read(run)

    # --- statistics ---
    # (``stats`` is imported here so that this block stands on its own.)

    async def statistics(self) -> dict[str, Any]:
        from server.stores.sqlite import stats

        now = self._clock()
        return await self.db.read(lambda conn: stats.overview(conn, now))

    async def tree_statistics(self, task_id: str) -> dict[str, Any]:
        from server.stores.sqlite import stats

        return await self.db.read(lambda conn: stats.tree(conn, task_id))


def check_not_revoked(conn: sqlite3.Connection, token: str) -> None:
    """Inside a write's transaction: a token revoked (by this process or by
    ``banyan-server token revoke`` in another) claims and reports nothing
    more, even on a socket or request that was let in before the revocation.
    (A name with no token row is a caller the store's own tests made up.)"""
    row = conn.execute(Q.TOKEN_STATE, (token,)).fetchone()
    if row is not None and row[0] is not None:
        raise Unauthorized(f"the token {token!r} was revoked")


__all__ = ["SqliteStore", "schema"]
