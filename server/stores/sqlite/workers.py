"""Workers and captured output inside a transaction: a worker joining (and
re-attaching to the attempts it still runs), leaving, being lost; the output
chunks of attempts, kept up to a byte bound per attempt (oldest dropped)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from banyan.errors import Conflict, NotFound
from banyan.states import ABANDONED
from server.domain import events as E
from server.domain import workers as rules
from server.stores.base import Joined, WorkerIdentity
from server.stores.sqlite import attempts
from server.stores.sqlite import queries as Q
from server.stores.sqlite.rows import dumps, loads, store_events


def join(
    conn: sqlite3.Connection,
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
    """Record the worker as connected, with ``secret`` (a digest) as the proof
    its process must carry from now on; returns ``(resumed, dropped)``: which
    of the attempts it says it still runs are still its own (only for the
    ``same_process``, proven by the gateway), and which are not (superseded,
    abandoned, never known, or named by another process) so that it stops them."""
    previous = conn.execute(Q.WORKER_STATE, (name,)).fetchone()
    conn.execute(
        Q.UPSERT_WORKER,
        (name, token, dumps(capacity), dumps(queues), host, pid, now, now, containment),
    )
    conn.execute(Q.SET_WORKER_SECRET, (secret, name))
    current: dict[str, str | None] = {}
    for task_id, key in held:
        row = conn.execute(Q.HELD_ATTEMPT_STATE, (task_id, key, name)).fetchone()
        current[task_id] = None if row is None else row[0]
    plan = rules.rejoin(
        held=held,
        current=current,
        open_attempts=open_attempts(conn, name),
        same_process=same_process and previous is not None,
    )
    queued = set(conn.execute(Q.OPEN_QUEUED_ATTEMPTS, (name,)).fetchall())
    for task_id, key in plan.unnamed:
        if (task_id, key) in queued:  # never started: back to the queue, uncounted
            attempts.unqueue(conn, task_id, key, caller=attempts.SYSTEM, now=now)
            continue
        attempts.finish_as_system(conn, task_id, key, ABANDONED, now, undelivered=plan.undelivered)
    resumed, dropped = plan.resumed, plan.dropped
    joined = E.worker_joined(
        name,
        host=host,
        capacity=capacity,
        queues=queues,
        rejoined=previous is not None,
        resumed=resumed,
    )
    store_events(conn, now, [joined])
    return Joined(resumed, dropped)


def identity(conn: sqlite3.Connection, name: str) -> WorkerIdentity | None:
    row = conn.execute(Q.WORKER_IDENTITY, (name,)).fetchone()
    return None if row is None else WorkerIdentity(secret=row[0], open_attempts=row[1])


def open_attempts(conn: sqlite3.Connection, name: str) -> list[tuple[str, str]]:
    rows = conn.execute(Q.OPEN_ATTEMPTS, (name,)).fetchall()
    return [(t, k) for t, k in rows]


def leave(conn: sqlite3.Connection, name: str, *, lost: bool, now: float) -> list[str]:
    """The worker left (``bye``) or was lost (silent too long): any attempt it
    still holds is abandoned and follows the retry rule."""
    state = conn.execute(Q.WORKER_STATE, (name,)).fetchone()
    if state is None:
        raise NotFound(f"no worker named {name!r}")
    abandoned = attempts.abandon_worker(conn, name, now)
    # ``last_seen`` stays the last time it was heard from; ``left`` is when it went.
    conn.execute(Q.WORKER_GONE, ("lost" if lost else "left", now, name))
    store_events(conn, now, [E.worker_gone(name, lost=lost, abandoned=abandoned)])
    return abandoned


def touch(conn: sqlite3.Connection, heard: Mapping[str, float], now: float) -> None:
    """Record when these workers were last heard from (one heartbeat event each)."""
    if heard:
        conn.executemany(Q.WORKER_HEARD, [(at, name) for name, at in heard.items()])
        store_events(conn, now, (E.worker_heartbeat(name) for name in heard))


def prune(conn: sqlite3.Connection, before: float) -> list[str]:
    """Forget the workers that left or were lost before ``before`` and hold no
    open attempt. Nothing refers to a worker row by key: attempts and tasks
    keep the worker's name as text, so their history stays whole."""
    return [name for (name,) in conn.execute(Q.PRUNE_WORKERS, (before,))]


def connected_names(conn: sqlite3.Connection) -> list[str]:
    return [n for (n,) in conn.execute(Q.CONNECTED_WORKERS)]


def list_workers(conn: sqlite3.Connection, name: str | None = None) -> list[dict[str, Any]]:
    where = "WHERE name = ?" if name is not None else ""
    rows = conn.execute(
        Q.LIST_WORKERS.format(where=where),
        (name,) if name is not None else (),
    ).fetchall()
    out = []
    for row in rows:
        w_name, _token, state, capacity, queues, host, pid, connected, last_seen, left, kind = row
        running = conn.execute(Q.WORKER_RUNNING, (w_name,)).fetchall()
        queued = [row[0] for row in running if row[6]]  # prefetched: held, not started
        running = [row[:6] for row in running if not row[6]]
        out.append(
            {
                "name": w_name,
                "state": state,
                "capacity": loads(capacity),
                "queues": loads(queues),
                "host": host,
                "pid": pid,
                "containment": kind,
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
                    for t, n, s, r, a, ts in running
                ],
                "queued": queued,
            }
        )
    return out


def append_log(
    conn: sqlite3.Connection,
    task_id: str,
    execution_key: str,
    stream: str,
    data: bytes,
    *,
    worker: str,
    max_log_bytes: int,
) -> None:
    row = conn.execute(Q.LOG_ATTEMPT, (task_id, execution_key)).fetchone()
    if row is None or row[1] != worker:
        raise Conflict(f"no attempt of task {task_id} with this key runs on {worker}")
    attempt = row[0]
    data = data[-max_log_bytes:]
    conn.execute(Q.INSERT_LOG, (task_id, attempt, stream, data))
    (total,) = conn.execute(Q.ADD_LOG_BYTES, (len(data), task_id, attempt)).fetchone()
    dropped = 0
    while total - dropped > max_log_bytes:
        oldest = conn.execute(Q.OLDEST_LOG, (task_id, attempt)).fetchone()
        conn.execute(Q.DELETE_LOG, (oldest[0],))
        dropped += oldest[1]
    if dropped:
        conn.execute(
            Q.DROP_LOG_BYTES,
            (dropped, dropped, task_id, attempt),
        )


def read_logs(
    conn: sqlite3.Connection,
    task_id: str,
    *,
    attempt: int | None,
    stream: str | None,
) -> dict[str, Any]:
    task = conn.execute(Q.TASK_ATTEMPT, (task_id,)).fetchone()
    if task is None:
        raise NotFound(f"no task with id {task_id}")
    number = task[0] if attempt is None else attempt
    info = conn.execute(Q.LOG_DROPPED, (task_id, number)).fetchone()
    if info is None:
        if attempt is not None:
            raise NotFound(f"task {task_id} has no attempt {attempt}")
        return {"_id": task_id, "attempt": None, "stdout": "", "stderr": "", "dropped_bytes": 0}
    streams = [stream] if stream else ["stdout", "stderr"]
    out: dict[str, Any] = {"_id": task_id, "attempt": number, "dropped_bytes": info[0]}
    for name in streams:
        chunks = conn.execute(Q.LOG_CHUNKS, (task_id, number, name))
        out[name] = b"".join(c for (c,) in chunks).decode("utf-8", "replace")
    return out
