"""Workers and captured output inside a PostgreSQL transaction: joining
(the rejoin plan is ``server.domain.workers.rejoin``), leaving, being lost,
heartbeats; the output of attempts, kept up to a byte bound per attempt."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from banyan.errors import Conflict, NotFound
from banyan.states import ABANDONED
from server.domain import events as E
from server.domain import workers as rules
from server.stores.base import Joined, WorkerIdentity
from server.stores.postgres import attempts
from server.stores.postgres import queries as Q
from server.stores.postgres.db import Tx
from server.stores.postgres.rows import dumps, loads


async def join(
    tx: Tx,
    *,
    name: str,
    token: str,
    capacity: dict[str, Any],
    queues: list[str],
    host: str,
    pid: int,
    held: Sequence[tuple[str, str]],
    containment: str | None = None,
    same_process: bool,
    secret: str,
    now: float,
) -> Joined:
    """``Store.join_worker``."""
    previous = await tx.fetchrow(Q.WORKER_STATE, name)
    await tx.execute(
        Q.UPSERT_WORKER,
        name,
        token,
        dumps(capacity),
        dumps(queues),
        host,
        pid,
        now,
        secret,
        containment,
    )
    current: dict[str, str | None] = {}
    for task_id, key in held:
        current[task_id] = await tx.fetchval(Q.HELD_ATTEMPT_STATE, task_id, key, name)
    open_rows = await tx.fetch(Q.OPEN_ATTEMPTS, name)
    plan = rules.rejoin(
        held=held,
        current=current,
        open_attempts=[(t, k) for t, k, _ in open_rows],
        same_process=same_process and previous is not None,
    )
    queued = {(t, k) for t, k, q in open_rows if q}
    for task_id, key in plan.unnamed:
        if (task_id, key) in queued:  # never started: back to the queue, uncounted
            await attempts.unqueue(tx, task_id, key, caller=attempts.SYSTEM, now=now)
            continue
        await attempts.finish_as_system(
            tx, task_id, key, ABANDONED, now, undelivered=plan.undelivered
        )
    joined = E.worker_joined(
        name,
        host=host,
        capacity=capacity,
        queues=queues,
        rejoined=previous is not None,
        resumed=plan.resumed,
    )
    tx.add_events(now, [joined])
    return Joined(plan.resumed, plan.dropped)


async def identity(tx: Tx, name: str) -> WorkerIdentity | None:
    row = await tx.fetchrow(Q.WORKER_IDENTITY, name)
    return None if row is None else WorkerIdentity(secret=row[0], open_attempts=row[1])


async def leave(tx: Tx, name: str, *, lost: bool, now: float) -> list[str]:
    """The worker left or was lost: its attempts are abandoned (retry rule).
    Its row is locked first, so two servers that both find it silent take
    turns; the second finds nothing left to abandon."""
    if await tx.fetchrow(Q.WORKER_STATE, name) is None:
        raise NotFound(f"no worker named {name!r}")
    abandoned = await attempts.abandon_worker(tx, name, now)
    await tx.execute(Q.WORKER_GONE, "lost" if lost else "left", now, name)
    tx.add_events(now, [E.worker_gone(name, lost=lost, abandoned=abandoned)])
    return abandoned


async def touch(tx: Tx, heard: Mapping[str, float], now: float) -> None:
    if heard:
        # In name order: two servers touching the same workers lock them alike.
        await tx.executemany(Q.WORKER_HEARD, [(heard[n], n) for n in sorted(heard)])
        tx.add_events(now, (E.worker_heartbeat(name) for name in heard))


async def list_workers(tx: Tx, name: str | None = None) -> list[dict[str, Any]]:
    out = []
    for row in await tx.fetch(Q.LIST_WORKERS, name):
        w_name, state, capacity, queues, host, pid, connected, last_seen, left, containment = row
        rows = await tx.fetch(Q.WORKER_RUNNING, w_name)
        out.append(
            {
                "name": w_name,
                "state": state,
                "capacity": loads(capacity),
                "queues": loads(queues),
                "host": host,
                "pid": pid,
                "containment": containment,
                "connected": connected,
                "last_seen": last_seen,
                "left": left,
                "running": [
                    {
                        "task": t,
                        "name": n,
                        "state": s,
                        "requested_resources": loads(r),
                        "attempt": a,
                        "time_started": ts,
                    }
                    for t, n, s, r, a, ts, queued in rows
                    if not queued
                ],
                "queued": [row[0] for row in rows if row[6]],
            }
        )
    return out


async def append_log(
    tx: Tx,
    task_id: str,
    execution_key: str,
    stream: str,
    data: bytes,
    *,
    worker: str,
    max_log_bytes: int,
) -> None:
    row = await tx.fetchrow(Q.LOG_ATTEMPT, task_id, execution_key)
    if row is None or row[1] != worker:
        raise Conflict(f"no attempt of task {task_id} with this key runs on {worker}")
    attempt = row[0]
    data = data[-max_log_bytes:]
    await tx.execute(Q.INSERT_LOG, task_id, attempt, stream, data)
    total = await tx.fetchval(Q.ADD_LOG_BYTES, len(data), task_id, attempt)
    dropped = 0
    while total - dropped > max_log_bytes:
        oldest_id, size = await tx.fetchrow(Q.OLDEST_LOG, task_id, attempt)
        await tx.execute(Q.DELETE_LOG, oldest_id)
        dropped += size
    if dropped:
        await tx.execute(Q.DROP_LOG_BYTES, dropped, task_id, attempt)


async def read_logs(
    tx: Tx, task_id: str, *, attempt: int | None, stream: str | None
) -> dict[str, Any]:
    current = await tx.fetchrow(Q.TASK_ATTEMPT, task_id)
    if current is None:
        raise NotFound(f"no task with id {task_id}")
    number = current[0] if attempt is None else attempt
    dropped = await tx.fetchrow(Q.LOG_DROPPED, task_id, number)
    if dropped is None:
        if attempt is not None:
            raise NotFound(f"task {task_id} has no attempt {attempt}")
        return {"_id": task_id, "attempt": None, "stdout": "", "stderr": "", "dropped_bytes": 0}
    out: dict[str, Any] = {"_id": task_id, "attempt": number, "dropped_bytes": dropped[0]}
    for name in [stream] if stream else ["stdout", "stderr"]:
        chunks = await tx.fetch(Q.LOG_CHUNKS, task_id, number, name)
        out[name] = b"".join(c for (c,) in chunks).decode("utf-8", "replace")
    return out
