"""The workers part of ``SqliteStore``: joining, leaving, liveness, the
worker list and the task logs they send (mixed into the store class)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from server.stores.base import Joined, WorkerIdentity
from server.stores.sqlite import workers
from server.stores.sqlite.db import Database


class WorkerMethods:
    # Set by ``SqliteStore.__init__``.
    db: Database
    _clock: Callable[[], float]
    max_log_bytes: int

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
        return await self.db.write(
            lambda conn: workers.join(
                conn,
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
        )

    async def worker_identity(self, name: str) -> WorkerIdentity | None:
        return await self.db.read(lambda conn: workers.identity(conn, name))

    async def leave_worker(self, name: str, *, lost: bool) -> list[str]:
        now = self._clock()
        return await self.db.write(lambda conn: workers.leave(conn, name, lost=lost, now=now))

    async def touch_workers(self, heard: Mapping[str, float]) -> None:
        now = self._clock()
        await self.db.write(lambda conn: workers.touch(conn, heard, now))

    async def prune_workers(self, *, before: float) -> list[str]:
        return await self.db.write(lambda conn: workers.prune(conn, before))

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
