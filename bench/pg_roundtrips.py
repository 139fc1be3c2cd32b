"""Round trips to PostgreSQL per Store operation (the figure a network adds
latency to), counted around asyncpg's connection methods.

    .venv/bin/python bench/pg_roundtrips.py [--ops 200] [--concurrency 16]

Each phase runs ``--ops`` operations of one kind from ``--concurrency``
callers on a fresh throwaway cluster, and prints the statements sent (each
one round trip: asyncpg sends a statement and waits for its answer; a
pipelined ``executemany`` counts once) per operation, with the committed
transactions per operation (group commit shares them). Phases: single
creates, claims of one task (``limit=1``), finishes (success, no
continuations), claims with one queued attempt (``prefetch=1``), starts of
queued attempts, and progress reports. Statement preparation is counted too
(a prepared statement is cached per connection, so it fades out). Printed,
never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

try:
    from testbed.postgres import Postgres
except ImportError:  # run as a script: put the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from testbed.postgres import Postgres

import asyncpg.connection

from banyan.models import TaskCreate
from banyan.resources import Resources
from banyan.tokens import Caller, Role
from server.stores.base import ClaimedAttempt
from server.stores.postgres.store import PostgresStore

ADMIN = Caller("bench", Role.ADMIN)
WORKER = Caller("w", Role.WORKER)
BIG = Resources(cores=1024, memory=2**40)
ONE = [TaskCreate.model_validate({"command": "true", "state": "available"})]
COUNTED = ("execute", "executemany", "fetch", "fetchrow", "fetchval")


class Counter:
    """Counts calls of asyncpg's statement methods (each is one round trip)
    and statement preparations (one more, the first time per connection)."""

    def __init__(self) -> None:
        self.calls = 0
        self.prepares = 0

    def install(self) -> None:
        cls: Any = asyncpg.connection.Connection
        for name in COUNTED:
            original = getattr(cls, name)
            setattr(cls, name, self._wrap(original))
        prepare = cls._get_statement

        async def counted_prepare(conn: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            key = (query, conn._protocol.get_record_class(), False)
            if conn._stmt_cache.get(key, promote=False) is None:
                self.prepares += 1
            return await prepare(conn, query, *args, **kwargs)

        cls._get_statement = counted_prepare

    def _wrap(self, original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await original(*args, **kwargs)

        return counted


async def phases(url: str, ops: int, conc: int, counter: Counter) -> list[tuple[str, float, float]]:
    store = PostgresStore(url, pool_size=conc)
    await store.open()
    out: list[tuple[str, float, float]] = []
    try:

        async def measure(label: str, calls: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
            queue = list(calls)
            results: list[Any] = []
            before = (counter.calls + counter.prepares, store.db.batches)

            async def runner() -> None:
                while queue:  # bounded: each turn takes one call
                    results.append(await queue.pop()())

            await asyncio.gather(*(runner() for _ in range(conc)))
            trips = counter.calls + counter.prepares - before[0]
            out.append((label, trips / len(calls), (store.db.batches - before[1]) / len(calls)))
            return results

        def claim(prefetch: int) -> Callable[[], Awaitable[list[ClaimedAttempt]]]:
            return lambda: store.claim(
                worker="w", token="w", free=BIG, queues=["default"], limit=1,
                prefetch=prefetch, capacity=BIG,
            )  # fmt: skip

        await measure("create (single)", [lambda: store.create_tasks(ONE, ADMIN)] * ops)
        claimed = [a for got in await measure("claim (limit 1)", [claim(0)] * ops) for a in got]

        def finish(a: ClaimedAttempt) -> Callable[[], Awaitable[Any]]:
            return lambda: store.finish(
                a["task"], a["execution_key"], exit_status="success", exit_code=0,
                usage=None, caller=WORKER,
            )  # fmt: skip

        await measure("finish (success)", [finish(a) for a in claimed])
        await store.create_tasks(ONE * (2 * ops), ADMIN)
        got = [a for g in await measure("claim (+1 queued)", [claim(1)] * ops) for a in g]
        queued = [a for a in got if a["queued"]]

        def start(a: ClaimedAttempt) -> Callable[[], Awaitable[None]]:
            return lambda: store.start_queued(
                a["task"], a["execution_key"], time=0.0, caller=WORKER, worker="w"
            )

        await measure("start (queued)", [start(a) for a in queued])

        def progress(a: ClaimedAttempt) -> Callable[[], Awaitable[None]]:
            return lambda: store.report_progress(a["task"], a["execution_key"], {"done": 1}, WORKER)

        await measure("report progress", [progress(a) for a in got])
    finally:
        await store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    ops, conc = max(10, min(args.ops, 10_000)), max(1, min(args.concurrency, 128))
    counter = Counter()
    counter.install()
    with Postgres() as pg:
        results = asyncio.run(phases(pg.new_database_sync("trips"), ops, conc, counter))
    print(f"{ops} operations per phase, {conc} concurrent callers")
    print(f"{'operation':<22}{'round trips/op':>16}{'commits/op':>12}")
    for label, trips, commits in results:
        print(f"{label:<22}{trips:>16.2f}{commits:>12.2f}")


if __name__ == "__main__":
    main()
