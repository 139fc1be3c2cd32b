"""asyncpg against psycopg 3 (async), on what the PostgreSQL store does most.

    .venv/bin/python bench/pg_driver.py [--reps 7] [--ops 400]

On a throwaway cluster (``testbed.postgres``; ``synchronous_commit=off`` so
that the figure is the driver's, not the disk's fsync), one connection per
driver, the same SQL:

- insert: a single-row INSERT of a task and of its event in a transaction;
- claim: a transaction that picks the best available task ``FOR UPDATE SKIP
  LOCKED``, marks it running and inserts an attempt row;
- read: a small ``SELECT`` of one task by id.

Repetitions alternate between the drivers (so drift hits both alike); the
figures are operations per second (median of the repetitions) and the ratio
asyncpg / psycopg with its range over the repetitions. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import psycopg

try:
    from testbed.postgres import Postgres
except ImportError:  # run as a script: put the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from testbed.postgres import Postgres

SCHEMA = """
CREATE TABLE tasks (id text PRIMARY KEY, state text NOT NULL, queue text NOT NULL,
    priority integer NOT NULL, cores double precision NOT NULL, resources jsonb NOT NULL,
    worker text, attempt integer NOT NULL DEFAULT 0, updated double precision NOT NULL);
CREATE INDEX tasks_claim ON tasks (queue, priority DESC, id) WHERE state = 'available';
CREATE TABLE events (seq bigserial PRIMARY KEY, time double precision, type text, data text);
CREATE TABLE attempts (task_id text, attempt integer, key text, worker text,
    PRIMARY KEY (task_id, attempt));
"""
INSERT_TASK = (
    "INSERT INTO tasks (id, state, queue, priority, cores, resources, updated) "
    "VALUES ($1, 'available', 'default', 0, 1, $2::jsonb, $3)"
)
INSERT_EVENT = "INSERT INTO events (time, type, data) VALUES ($1, 'task.created', $2)"
PICK = (
    "SELECT id, resources::text FROM tasks WHERE state = 'available' AND queue = 'default' "
    "AND cores <= $1 ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED"
)
START = (
    "UPDATE tasks SET state = 'running', worker = 'w', attempt = attempt + 1, updated = $1 "
    "WHERE id = $2 RETURNING attempt"
)
INSERT_ATTEMPT = "INSERT INTO attempts (task_id, attempt, key, worker) VALUES ($1, $2, $3, 'w')"
READ = "SELECT id, state, queue, priority, resources::text, worker FROM tasks WHERE id = $1"


def psycopg_sql(sql: str) -> str:
    """The same statement with psycopg's placeholders."""
    for n in range(9, 0, -1):
        sql = sql.replace(f"${n}", "%s")
    return sql


class AsyncpgOps:
    name = "asyncpg"

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def insert(self, task_id: str) -> None:
        async with self.conn.transaction():
            await self.conn.execute(INSERT_TASK, task_id, '{"cores": 1}', time.time())
            await self.conn.execute(INSERT_EVENT, time.time(), '{"task": "x"}')

    async def claim(self) -> None:
        async with self.conn.transaction():
            row = await self.conn.fetchrow(PICK, 4.0)
            if row is not None:
                attempt = await self.conn.fetchval(START, time.time(), row[0])
                await self.conn.execute(INSERT_ATTEMPT, row[0], attempt, uuid.uuid4().hex)

    async def read(self, task_id: str) -> None:
        await self.conn.fetchrow(READ, task_id)


class PsycopgOps:
    name = "psycopg"

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.insert_task, self.insert_event = psycopg_sql(INSERT_TASK), psycopg_sql(INSERT_EVENT)
        self.pick, self.start = psycopg_sql(PICK), psycopg_sql(START)
        self.insert_attempt, self.read_sql = psycopg_sql(INSERT_ATTEMPT), psycopg_sql(READ)

    async def insert(self, task_id: str) -> None:
        async with self.conn.transaction():
            await self.conn.execute(self.insert_task, (task_id, '{"cores": 1}', time.time()))
            await self.conn.execute(self.insert_event, (time.time(), '{"task": "x"}'))

    async def claim(self) -> None:
        async with self.conn.transaction():
            cur = await self.conn.execute(self.pick, (4.0,))
            row = await cur.fetchone()
            if row is not None:
                cur = await self.conn.execute(self.start, (time.time(), row[0]))
                (attempt,) = await cur.fetchone() or (0,)
                await self.conn.execute(self.insert_attempt, (row[0], attempt, uuid.uuid4().hex))

    async def read(self, task_id: str) -> None:
        cur = await self.conn.execute(self.read_sql, (task_id,))
        await cur.fetchone()


async def timed(ops: int, op: Callable[[int], Awaitable[None]]) -> float:
    start = time.perf_counter()
    for i in range(ops):
        await op(i)
    return ops / (time.perf_counter() - start)


async def main_async(url: str, reps: int, ops: int) -> None:
    setup = await asyncpg.connect(url)
    await setup.execute(SCHEMA)
    await setup.close()
    a = AsyncpgOps(await asyncpg.connect(url))
    # prepare_threshold=0: psycopg prepares every statement, as asyncpg does.
    p = PsycopgOps(await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=0))
    drivers: list[Any] = [a, p]
    rates: dict[tuple[str, str], list[float]] = {}
    for rep in range(reps):
        order = drivers if rep % 2 == 0 else drivers[::-1]
        for d in order:
            ids = [f"{d.name}-{rep}-{i}" for i in range(ops)]
            rates.setdefault(("insert", d.name), []).append(
                await timed(ops, lambda i, d=d, ids=ids: d.insert(ids[i]))
            )
            rates.setdefault(("claim", d.name), []).append(
                await timed(ops, lambda i, d=d: d.claim())
            )
            rates.setdefault(("read", d.name), []).append(
                await timed(ops, lambda i, d=d, ids=ids: d.read(ids[i % len(ids)]))
            )
    await a.conn.close()
    await p.conn.close()
    print(f"{reps} alternating repetitions of {ops} operations each, one connection per driver")
    print(f"{'operation':<10}{'asyncpg op/s':>14}{'psycopg op/s':>14}{'ratio a/p (range)':>26}")
    for what in ("insert", "claim", "read"):
        fast, slow = rates[(what, "asyncpg")], rates[(what, "psycopg")]
        ratios = sorted(x / y for x, y in zip(fast, slow, strict=True))
        print(
            f"{what:<10}{statistics.median(fast):>14.0f}{statistics.median(slow):>14.0f}"
            f"{statistics.median(ratios):>12.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--ops", type=int, default=400)
    args = parser.parse_args()
    with Postgres(settings={"synchronous_commit": "off"}) as pg:
        url = pg.new_database_sync("driver")
        asyncio.run(main_async(url, max(2, min(args.reps, 50)), max(10, min(args.ops, 20_000))))


if __name__ == "__main__":
    main()
