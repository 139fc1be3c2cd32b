"""``SqliteStore``: the Store on one SQLite file in WAL mode.

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

from banyan.errors import BanyanError, Conflict, InvalidInput, NotFound
from banyan.models import BulkPatchItem, ContinuationEdit, MemoryUsage, TaskCreate, TaskPatch
from banyan.resources import Amounts, Resources
from banyan.states import Actor
from banyan.tokens import Caller, Role, generate_token, hash_token, same_digest
from server.domain.idempotency import Answer, Submission
from server.stores.base import (
    ClaimedAttempt,
    CreatedTask,
    Health,
    ItemResult,
    Joined,
    Page,
    Query,
    Store,
    TokenInfo,
)
from server.stores.sqlite import attempts, graph, idempotency, schema, tasks, workers
from server.stores.sqlite import queries as Q
from server.stores.sqlite.db import Database
from server.stores.sqlite.rows import TASK_COLUMNS, docs_for_rows, get_doc, loads
from server.stores.sqlite.sqlquery import MEMORY_COLUMNS, TASK_QUERY_COLUMNS, page_sql

Clock = Callable[[], float]


class SqliteStore(Store):
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
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
            return Health(ok=True, schema_version=version, details={"journal_mode": mode})

        return await self.db.read(probe)

    # --- tasks -----------------------------------------------------------------

    async def create_tasks(self, items: Sequence[TaskCreate], caller: Caller) -> list[CreatedTask]:
        now = self._clock()
        return await self.db.write(lambda conn: tasks.create_tasks(conn, items, caller, now))

    async def create_tasks_once(
        self,
        items: Sequence[TaskCreate],
        caller: Caller,
        submission: Submission,
        respond: Callable[[list[CreatedTask]], tuple[int, Any]],
    ) -> Answer:
        now = self._clock()
        return await self.db.write(
            lambda conn: idempotency.create_tasks_once(
                conn, items, caller, now, submission, respond
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
            if conn.execute("SELECT 1 FROM tasks WHERE id = ?", (task_id,)).fetchone() is None:
                raise NotFound(f"no task with id {task_id}")
            rows = conn.execute(
                # A prefetched attempt that never started has no start time.
                "SELECT attempt, worker, CASE WHEN queued THEN NULL ELSE time_started END, "
                "time_terminated, exit_status, exit_code, usage FROM attempts "
                "WHERE task_id = ? ORDER BY attempt",
                (task_id,),
            ).fetchall()
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
        prefetch: int = 0,
        capacity: Resources | None = None,
    ) -> list[ClaimedAttempt]:
        now = self._clock()
        return await self.db.write(
            lambda conn: attempts.claim(
                conn,
                worker=worker,
                token=token,
                free=free,
                queues=queues,
                limit=limit,
                now=now,
                prefetch=prefetch,
                capacity=capacity,
            )
        )

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
    ) -> dict[str, Any]:
        now = self._clock()

        def run(conn: sqlite3.Connection) -> dict[str, Any]:
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
            return get_doc(conn, task_id)

        return await self.db.write(run)

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
        rows = [(r.task, r.time, r.resident_memory_bytes) for r in records]
        return await self.db.write(lambda conn: attempts.add_memory_usage(conn, rows, caller, now))

    async def find_memory_usage(self, query: Query) -> Page:
        select, count, params = page_sql(
            query,
            MEMORY_COLUMNS,
            table="memory_usage",
            columns="id, task_id, attempt, time, resident_memory_bytes",
        )

        def run(conn: sqlite3.Connection) -> Page:
            rows = conn.execute(select, params).fetchall()
            (total,) = conn.execute(count, params[:-2]).fetchone()
            items = [
                {"_id": str(i), "task": t, "attempt": a, "time": tm, "resident_memory_bytes": r}
                for i, t, a, tm, r in rows
            ]
            return Page(items=items, total=total)

        return await self.db.read(run)

    # --- events ----------------------------------------------------------------

    async def events_since(self, seq: int, *, limit: int = 1000) -> list[dict[str, Any]]:
        def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(Q.EVENTS_SINCE, (seq, limit)).fetchall()
            return [{"seq": s, "time": t, "type": k, "data": loads(d)} for s, t, k, d in rows]

        return await self.db.read(run)

    async def last_seq(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            (seq,) = conn.execute(Q.LAST_SEQ).fetchone()
            return int(seq)

        return await self.db.read(run)

    def add_commit_listener(self, callback: Callable[[], None]) -> None:
        self.db.on_commit.append(callback)

    # --- workers ---------------------------------------------------------------

    async def join_worker(
        self,
        *,
        name: str,
        token: str,
        capacity: dict[str, Any],
        queues: list[str],
        host: str,
        pid: int,
        held: Sequence[tuple[str, str]],
    ) -> Joined:
        now = self._clock()
        return await self.db.write(
            lambda conn: workers.join(
                conn,
                name=name,
                token=token,
                capacity=capacity,
                queues=queues,
                host=host,
                pid=pid,
                held=held,
                now=now,
            )
        )

    async def leave_worker(self, name: str, *, lost: bool) -> list[str]:
        now = self._clock()
        return await self.db.write(lambda conn: workers.leave(conn, name, lost=lost, now=now))

    async def touch_workers(self, names: Sequence[str]) -> None:
        now = self._clock()
        await self.db.write(lambda conn: workers.touch(conn, names, now))

    async def connected_workers(self) -> list[str]:
        return await self.db.read(workers.connected_names)

    async def list_workers(self, name: str | None = None) -> list[dict[str, Any]]:
        return await self.db.read(lambda conn: workers.list_workers(conn, name))

    async def append_log(
        self, task_id: str, execution_key: str, stream: str, data: bytes, *, worker: str
    ) -> None:
        await self.db.write(
            lambda conn: workers.append_log(
                conn,
                task_id,
                execution_key,
                stream,
                data,
                worker=worker,
                max_log_bytes=self.max_log_bytes,
            )
        )

    async def read_logs(
        self, task_id: str, *, attempt: int | None = None, stream: str | None = None
    ) -> dict[str, Any]:
        return await self.db.read(
            lambda conn: workers.read_logs(conn, task_id, attempt=attempt, stream=stream)
        )

    async def oldest_seq(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            (seq,) = conn.execute(Q.OLDEST_SEQ).fetchone()
            return int(seq)

        return await self.db.read(run)

    async def prune_events(self, *, keep: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            (last,) = conn.execute(Q.LAST_SEQ).fetchone()
            cursor = conn.execute(Q.PRUNE_EVENTS, (last - keep,))
            return int(cursor.rowcount)

        return await self.db.write(run)

    # --- tokens ----------------------------------------------------------------

    async def create_token(self, name: str, role: Role) -> str:
        if not name or len(name) > 128 or not name.isprintable():
            raise InvalidInput(
                "a token name is 1 to 128 printable characters", issues={"name": name}
            )
        token = generate_token()
        now = self._clock()

        def run(conn: sqlite3.Connection) -> None:
            found = conn.execute(Q.TOKEN_REVOKED, (name,)).fetchone()
            if found is not None and found[0] is None:
                raise Conflict(f"a token named {name!r} already exists")
            if found is not None:  # tasks and history name it: never a new holder
                raise Conflict(f"a token named {name!r} was revoked; its name is not given again")
            conn.execute(Q.INSERT_TOKEN, (name, role.value, hash_token(token), now))

        await self.db.write(run)
        return token

    async def list_tokens(self) -> list[TokenInfo]:
        def run(conn: sqlite3.Connection) -> list[TokenInfo]:
            rows = conn.execute(Q.LIST_TOKENS)
            return [TokenInfo(name=n, role=Role(r), created=c, revoked=v) for n, r, c, v in rows]

        return await self.db.read(run)

    async def revoke_token(self, name: str) -> None:
        now = self._clock()

        def run(conn: sqlite3.Connection) -> None:
            changed = conn.execute(Q.REVOKE_TOKEN, (now, name)).fetchone()
            if changed is None:
                raise NotFound(f"no active token named {name!r}")

        await self.db.write(run)

    async def verify_token(self, token: str) -> Caller | None:
        digest = hash_token(token)

        def run(conn: sqlite3.Connection) -> Caller | None:
            row = conn.execute(Q.VERIFY_TOKEN, (digest,)).fetchone()
            if row is None or not same_digest(row[2], digest):
                return None
            return Caller(name=row[0], role=Role(row[1]))

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


__all__ = ["SqliteStore", "schema"]
