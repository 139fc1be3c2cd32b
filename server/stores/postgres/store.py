"""``PostgresStore``: the Store on a PostgreSQL database (the package
docstring says how several servers share one). Each method is one
transaction (``Database.write``) or one snapshot (``Database.read``) around
a function of the modules beside it."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from banyan.errors import BanyanError, NotFound
from banyan.models import BulkPatchItem, ContinuationEdit, MemoryUsage, TaskCreate, TaskPatch
from banyan.resources import Amounts, Resources
from banyan.states import Actor
from banyan.tokens import Caller
from server.domain import idempotency as idem
from server.stores.base import (
    ClaimedAttempt,
    CreatedTask,
    Health,
    ItemResult,
    Joined,
    Page,
    Query,
    Store,
    WorkerIdentity,
)
from server.stores.postgres import attempts, cluster, graph, reads, tasks, workers
from server.stores.postgres import queries as Q
from server.stores.postgres.cluster import PostgresCluster
from server.stores.postgres.db import Database, Tx
from server.stores.postgres.rows import dumps, get_doc, loads
from server.stores.postgres.tokens import TokenMethods

Clock = Callable[[], float]


class PostgresStore(TokenMethods, PostgresCluster, Store):
    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 10,
        batch_max_ops: int = 512,
        require_if_match: bool = False,
        max_log_bytes: int = 1 << 20,
        clock: Clock = time.time,
    ) -> None:
        self.db = Database(dsn, pool_size=pool_size, batch_max_ops=batch_max_ops)
        self.max_log_bytes = max_log_bytes
        self._require_if_match = require_if_match
        self._clock = clock

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def health(self) -> Health:
        async def run(tx: Tx) -> Health:
            version = await tx.fetchval(Q.SCHEMA_VERSION)
            server = await tx.fetchval("SHOW server_version")
            details = {"backend": "postgresql", "server_version": server}
            return Health(ok=True, schema_version=int(version), details=details)

        return await self.db.read(run, snapshot=False)

    # --- tasks -----------------------------------------------------------------

    async def create_tasks(
        self, items: Sequence[TaskCreate], caller: Caller, *, job_name: str | None = None
    ) -> list[CreatedTask]:
        now = self._clock()
        return await self.db.write(
            lambda tx: tasks.create_tasks(tx, items, caller, now, job_name=job_name)
        )

    async def create_tasks_once(
        self,
        items: Sequence[TaskCreate],
        caller: Caller,
        submission: idem.Submission,
        respond: Callable[[list[CreatedTask]], tuple[int, Any]],
        *,
        job_name: str | None = None,
    ) -> idem.Answer:
        now = self._clock()
        oldest = now - submission.retention_s

        async def run(tx: Tx) -> idem.Answer:
            # The key's row (if any) is locked: two servers given one key take turns.
            row = await tx.fetchrow(Q.IDEMPOTENCY_FIND, caller.name, submission.key, oldest)
            if row is not None:
                stored_hash, status, response = row
                idem.check_same_request(stored_hash, submission)
                return idem.Answer(status=status, body=loads(response), replayed=True)
            created = await tasks.create_tasks(tx, items, caller, now, job_name=job_name)
            status, body = respond(created)
            await tx.execute(Q.IDEMPOTENCY_PRUNE, oldest)
            await tx.execute(
                Q.IDEMPOTENCY_SAVE,
                caller.name,
                submission.key,
                submission.request_hash,
                status,
                dumps(body),
                now,
            )
            return idem.Answer(status=status, body=body, replayed=False)

        return await self.db.write(run)

    async def find_jobs(self, query: Query) -> Page:
        return await self.db.read(lambda tx: reads.find_jobs(tx, query))

    async def get_job(self, job_id: str) -> dict[str, Any]:
        return await self.db.read(lambda tx: reads.get_job(tx, job_id))

    async def get_task(self, task_id: str) -> dict[str, Any]:
        return await self.db.read(lambda tx: get_doc(tx, task_id))

    async def find_tasks(self, query: Query) -> Page:
        return await self.db.read(lambda tx: reads.find_tasks(tx, query))

    async def update_task(
        self, task_id: str, patch: TaskPatch, caller: Caller, *, if_match: str | None = None
    ) -> dict[str, Any]:
        now = self._clock()
        return await self.db.write(
            lambda tx: tasks.update_task(
                tx,
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
        # Each item is its own transaction (its own all or nothing).
        async def one(item: BulkPatchItem) -> ItemResult:
            patch = TaskPatch.model_validate(
                item.model_dump(exclude_unset=True, exclude={"id", "etag"})
            )
            try:
                doc = await self.update_task(item.id, patch, caller, if_match=item.etag)
            except BanyanError as exc:
                return ItemResult(task_id=item.id, error=exc)
            return ItemResult(task_id=item.id, doc=doc)

        return [await one(item) for item in items]

    async def edit_continuations(
        self, edits: Sequence[ContinuationEdit], caller: Caller, *, add: bool
    ) -> None:
        now = self._clock()
        change = graph.add_edges if add else graph.remove_edges

        async def run(tx: Tx) -> None:
            for i, edit in enumerate(edits):
                pairs = [(t, v) for t in edit.targets for v in edit.values]
                await change(tx, pairs, caller, now, issue_key=f"{i}.values")

        await self.db.write(run)

    async def history(self, task_id: str) -> list[dict[str, Any]]:
        async def run(tx: Tx) -> list[dict[str, Any]]:
            if await tx.fetchrow(Q.TASK_EXISTS, task_id) is None:
                raise NotFound(f"no task with id {task_id}")
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
                for a, w, s, e, st, code, u in await tx.fetch(Q.HISTORY, task_id)
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

        async def run(tx: Tx) -> list[ClaimedAttempt]:
            return await attempts.claim(
                tx,
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
            lambda tx: attempts.mark_started(
                tx, task_id, execution_key, time=time, caller=caller, worker=worker, now=now
            )
        )

    async def return_queued(
        self, task_id: str, execution_key: str, *, caller: Caller, worker: str
    ) -> None:
        now = self._clock()
        await self.db.write(
            lambda tx: attempts.unqueue(
                tx, task_id, execution_key, caller=caller, now=now, worker=worker
            )
        )

    async def next_begin(self) -> float | None:
        found = await self.db.read(
            lambda tx: tx.fetchval(Q.NEXT_BEGIN, self._clock()), snapshot=False
        )
        return None if found is None else float(found)

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

        async def run(tx: Tx) -> None:
            await attempts.finish(
                tx,
                task_id,
                execution_key,
                exit_status=exit_status,
                exit_code=exit_code,
                usage=usage,
                caller=caller,
                now=now,
                actor=actor,
                worker=worker,
                token=caller.name,  # a revoked token reports nothing more
            )

        await self.db.write(run)

    async def report_progress(
        self, task_id: str, execution_key: str, progress: dict[str, Any], caller: Caller
    ) -> None:
        now = self._clock()
        await self.db.write(
            lambda tx: attempts.report_progress(tx, task_id, execution_key, progress, caller, now)
        )

    async def abandon_worker(self, worker: str) -> list[str]:
        now = self._clock()
        return await self.db.write(lambda tx: attempts.abandon_worker(tx, worker, now))

    async def tasks_ahead(
        self, task_id: str, priority: int, queues: Sequence[str], limit: int
    ) -> list[Amounts]:
        return await self.db.read(
            lambda tx: attempts.tasks_ahead(tx, task_id, priority, queues, limit), snapshot=False
        )

    # --- memory usage ----------------------------------------------------------

    async def add_memory_usage(self, records: Sequence[MemoryUsage], caller: Caller) -> int:
        now = self._clock()
        rows = [(r.task, r.time, r.resident_memory_bytes, r.cpu_percent) for r in records]
        return await self.db.write(lambda tx: attempts.add_memory_usage(tx, rows, caller, now))

    async def find_memory_usage(self, query: Query) -> Page:
        return await self.db.read(lambda tx: reads.find_memory_usage(tx, query))

    # --- events ----------------------------------------------------------------

    async def events_since(self, seq: int, *, limit: int = 1000) -> list[dict[str, Any]]:
        async def run(tx: Tx) -> list[dict[str, Any]]:
            rows = await tx.fetch(Q.EVENTS_SINCE, seq, limit)
            return [{"seq": s, "time": t, "type": k, "data": loads(d)} for s, t, k, d in rows]

        return await self.db.read(run, snapshot=False)

    async def last_seq(self) -> int:
        return int(await self.db.read(lambda tx: tx.fetchval(Q.LAST_SEQ), snapshot=False))

    async def oldest_seq(self) -> int:
        return int(await self.db.read(lambda tx: tx.fetchval(Q.OLDEST_SEQ), snapshot=False))

    async def prune_events(self, *, keep: int) -> int:
        async def run(tx: Tx) -> int:
            status = await tx.execute(Q.PRUNE_EVENTS, keep)
            return int(status.rsplit(" ", 1)[-1])

        return await self.db.write(run)

    def add_commit_listener(self, callback: Callable[[], None]) -> None:
        self.db.on_commit.append(callback)

    # --- workers and their output ----------------------------------------------

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
        same_process: bool = False,
        secret: str = "",
        containment: str | None = None,
    ) -> Joined:
        now = self._clock()

        async def run(tx: Tx) -> Joined:
            joined = await workers.join(
                tx,
                name=name,
                token=token,
                capacity=capacity,
                queues=queues,
                host=host,
                pid=pid,
                containment=containment,
                held=held,
                same_process=same_process,
                secret=secret,
                now=now,
            )
            await cluster.attach(tx, name, self.db.server_id)  # this server holds it now
            return joined

        return await self.db.write(run)

    async def worker_identity(self, name: str) -> WorkerIdentity | None:
        return await self.db.read(lambda tx: workers.identity(tx, name), snapshot=False)

    async def leave_worker(self, name: str, *, lost: bool) -> list[str]:
        now = self._clock()
        return await self.db.write(lambda tx: workers.leave(tx, name, lost=lost, now=now))

    async def touch_workers(self, heard: Mapping[str, float]) -> None:
        now = self._clock()
        await self.db.write(lambda tx: workers.touch(tx, heard, now))

    async def prune_workers(self, *, before: float) -> list[str]:
        async def run(tx: Tx) -> list[str]:
            return [name for (name,) in await tx.fetch(Q.PRUNE_WORKERS, before)]

        return await self.db.write(run)

    async def connected_workers(self) -> list[str]:
        async def run(tx: Tx) -> list[str]:
            return [name for (name,) in await tx.fetch(Q.CONNECTED_WORKERS)]

        return await self.db.read(run, snapshot=False)

    async def list_workers(self, name: str | None = None) -> list[dict[str, Any]]:
        return await self.db.read(lambda tx: workers.list_workers(tx, name))

    async def append_log(
        self, task_id: str, execution_key: str, stream: str, data: bytes, *, worker: str
    ) -> None:
        await self.db.write(
            lambda tx: workers.append_log(
                tx,
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
            lambda tx: workers.read_logs(tx, task_id, attempt=attempt, stream=stream)
        )

    # --- statistics ------------------------------------------------------------

    async def statistics(self) -> dict[str, Any]:
        now = self._clock()
        return await self.db.read(lambda tx: reads.overview(tx, now))

    async def tree_statistics(self, task_id: str) -> dict[str, Any]:
        return await self.db.read(lambda tx: reads.tree(tx, task_id))
