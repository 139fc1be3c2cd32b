"""Workers and captured output inside a transaction: a worker joining (and
re-attaching to the attempts it still runs), leaving, being lost; the output
chunks of attempts, kept up to a byte bound per attempt (oldest dropped)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from banyan.errors import Conflict, NotFound
from banyan.states import ABANDONED
from server.domain import events as E
from server.domain import workers as rules
from server.stores.base import Joined
from server.stores.sqlite import attempts
from server.stores.sqlite import queries as Q
from server.stores.sqlite.rows import dumps, loads, placeholders, store_events

WORKER_COLUMNS = "name, token, state, capacity, queues, host, pid, connected, last_seen, left"


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
    now: float,
) -> Joined:
    """Record the worker as connected; returns ``(resumed, dropped)``: which of
    the attempts it says it still runs are still its own, and which are not
    (superseded, abandoned, or never known) so that it stops them."""
    previous = conn.execute(
        "SELECT state, host, pid FROM workers WHERE name = ?", (name,)
    ).fetchone()
    conn.execute(
        "INSERT INTO workers (name, token, state, capacity, queues, host, pid, connected, "
        "last_seen) VALUES (?, ?, 'connected', ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET token = excluded.token, state = 'connected', "
        "capacity = excluded.capacity, queues = excluded.queues, host = excluded.host, "
        "pid = excluded.pid, connected = excluded.connected, last_seen = excluded.last_seen, "
        "left = NULL",
        (name, token, dumps(capacity), dumps(queues), host, pid, now, now),
    )
    current: dict[str, str | None] = {}
    for task_id, key in held:
        row = conn.execute(Q.HELD_ATTEMPT_STATE, (task_id, key, name)).fetchone()
        current[task_id] = None if row is None else row[0]
    same_process = previous is not None and (previous[1], previous[2]) == (host, pid)
    plan = rules.rejoin(
        held=held,
        current=current,
        open_attempts=open_attempts(conn, name),
        same_process=same_process,
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


def open_attempts(conn: sqlite3.Connection, name: str) -> list[tuple[str, str]]:
    rows = conn.execute(Q.OPEN_ATTEMPTS, (name,)).fetchall()
    return [(t, k) for t, k in rows]


def leave(conn: sqlite3.Connection, name: str, *, lost: bool, now: float) -> list[str]:
    """The worker left (``bye``) or was lost (silent too long): any attempt it
    still holds is abandoned and follows the retry rule."""
    state = conn.execute("SELECT state FROM workers WHERE name = ?", (name,)).fetchone()
    if state is None:
        raise NotFound(f"no worker named {name!r}")
    abandoned = attempts.abandon_worker(conn, name, now)
    conn.execute(
        "UPDATE workers SET state = ?, left = ?, last_seen = max(last_seen, ?) WHERE name = ?",
        ("lost" if lost else "left", now, now, name),
    )
    store_events(conn, now, [E.worker_gone(name, lost=lost, abandoned=abandoned)])
    return abandoned


def touch(conn: sqlite3.Connection, names: Sequence[str], now: float) -> None:
    """Record that these workers were heard from (one heartbeat event each)."""
    if names:
        conn.execute(
            f"UPDATE workers SET last_seen = ? WHERE name IN ({placeholders(len(names))})",
            (now, *names),
        )
        store_events(conn, now, (E.worker_heartbeat(name) for name in names))


def connected_names(conn: sqlite3.Connection) -> list[str]:
    return [n for (n,) in conn.execute("SELECT name FROM workers WHERE state = 'connected'")]


def list_workers(conn: sqlite3.Connection, name: str | None = None) -> list[dict[str, Any]]:
    where = "WHERE name = ?" if name is not None else ""
    rows = conn.execute(
        f"SELECT {WORKER_COLUMNS} FROM workers {where} ORDER BY name",
        (name,) if name is not None else (),
    ).fetchall()
    out = []
    for w_name, _token, state, capacity, queues, host, pid, connected, last_seen, left in rows:
        running = conn.execute(
            "SELECT t.id, t.name, t.state, t.requested_resources, a.attempt, a.time_started, "
            "a.queued FROM attempts a JOIN tasks t ON t.id = a.task_id AND t.attempt = a.attempt "
            "WHERE a.worker = ? AND a.time_terminated IS NULL ORDER BY a.time_started",
            (w_name,),
        ).fetchall()
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
    row = conn.execute(
        "SELECT a.attempt, a.worker, a.time_terminated FROM attempts a JOIN tasks t "
        "ON t.id = a.task_id WHERE a.task_id = ? AND a.execution_key = ?",
        (task_id, execution_key),
    ).fetchone()
    if row is None or row[1] != worker:
        raise Conflict(f"no attempt of task {task_id} with this key runs on {worker}")
    attempt = row[0]
    data = data[-max_log_bytes:]
    conn.execute(
        "INSERT INTO logs (task_id, attempt, stream, data) VALUES (?, ?, ?, ?)",
        (task_id, attempt, stream, data),
    )
    (total,) = conn.execute(
        "UPDATE attempts SET log_bytes = log_bytes + ? WHERE task_id = ? AND attempt = ? "
        "RETURNING log_bytes",
        (len(data), task_id, attempt),
    ).fetchone()
    dropped = 0
    while total - dropped > max_log_bytes:
        oldest = conn.execute(
            "SELECT id, length(data) FROM logs WHERE task_id = ? AND attempt = ? "
            "ORDER BY id LIMIT 1",
            (task_id, attempt),
        ).fetchone()
        conn.execute("DELETE FROM logs WHERE id = ?", (oldest[0],))
        dropped += oldest[1]
    if dropped:
        conn.execute(
            "UPDATE attempts SET log_bytes = log_bytes - ?, log_dropped = log_dropped + ? "
            "WHERE task_id = ? AND attempt = ?",
            (dropped, dropped, task_id, attempt),
        )


def read_logs(
    conn: sqlite3.Connection,
    task_id: str,
    *,
    attempt: int | None,
    stream: str | None,
) -> dict[str, Any]:
    task = conn.execute("SELECT attempt FROM tasks WHERE id = ?", (task_id,)).fetchone()
    if task is None:
        raise NotFound(f"no task with id {task_id}")
    number = task[0] if attempt is None else attempt
    info = conn.execute(
        "SELECT log_dropped FROM attempts WHERE task_id = ? AND attempt = ?", (task_id, number)
    ).fetchone()
    if info is None:
        if attempt is not None:
            raise NotFound(f"task {task_id} has no attempt {attempt}")
        return {"_id": task_id, "attempt": None, "stdout": "", "stderr": "", "dropped_bytes": 0}
    streams = [stream] if stream else ["stdout", "stderr"]
    out: dict[str, Any] = {"_id": task_id, "attempt": number, "dropped_bytes": info[0]}
    for name in streams:
        chunks = conn.execute(
            "SELECT data FROM logs WHERE task_id = ? AND attempt = ? AND stream = ? ORDER BY id",
            (task_id, number, name),
        )
        out[name] = b"".join(c for (c,) in chunks).decode("utf-8", "replace")
    return out
