"""The Store on SQLite against the Store on PostgreSQL, in one run, in process
(no HTTP: the figure is the store's).

    .venv/bin/python bench/pg_store.py [--tasks 2000] [--concurrency 16] [--reps 3]
                                       [--synchronous-commit off]

Both durable as shipped: SQLite ``synchronous=FULL`` (group commit),
PostgreSQL ``synchronous_commit=on`` on a throwaway cluster
(``testbed.postgres``, no FAST settings; ``--synchronous-commit off`` shows
what giving up the last moments of acknowledged writes on a crash would buy).
For each backend, ``--concurrency``
coroutines share the work:

- submit: one single-task ``create_tasks`` per call (a single POST);
- bulk: ``create_tasks`` of 500 tasks per call;
- cycle: ``claim`` one task, then ``finish`` it (what a worker does per task);

then, on PostgreSQL only, the same cycle split between two stores on one
database (two servers, as far as the database can tell; both stores live in
this one Python process, so this shows what the shared locks cost, not what
a second server's CPU adds). Repetitions alternate the backends; figures are
operations per second (median), with the PG/SQLite ratio and its range.
Printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

try:
    from testbed.postgres import Postgres
except ImportError:  # run as a script: put the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from testbed.postgres import Postgres

from banyan.models import TaskCreate
from banyan.resources import Resources
from banyan.tokens import Caller, Role
from server.stores.base import Store
from server.stores.postgres.store import PostgresStore
from server.stores.sqlite.store import SqliteStore

ADMIN = Caller("bench", Role.ADMIN)
WORKER = Caller("w", Role.WORKER)
BIG = Resources(cores=1024, memory=2**40)
ONE = [TaskCreate.model_validate({"command": "true", "state": "available"})]


async def spread(total: int, concurrency: int, op: Callable[[int], Awaitable[int]]) -> float:
    """Run ``op`` from ``concurrency`` coroutines until ``total`` units are done; units/s."""
    done = 0

    async def runner(n: int) -> None:
        nonlocal done
        while done < total:  # bounded: every op does at least one unit or stops
            units = await op(n)
            if units == 0:
                return
            done += units

    start = time.perf_counter()
    await asyncio.gather(*(runner(n) for n in range(concurrency)))
    return done / (time.perf_counter() - start)


async def submit(store: Store, tasks: int, concurrency: int) -> float:
    async def one(_n: int) -> int:
        await store.create_tasks(ONE, ADMIN)
        return 1

    return await spread(tasks, concurrency, one)


async def bulk(store: Store, tasks: int, concurrency: int) -> float:
    chunk = ONE * 500

    async def one(_n: int) -> int:
        await store.create_tasks(chunk, ADMIN)
        return len(chunk)

    return await spread(tasks * 5, min(concurrency, 4), one)


async def cycle(stores: list[Store], tasks: int, concurrency: int) -> float:
    """Claim one task and finish it, from ``concurrency`` workers spread over ``stores``."""

    async def one(n: int) -> int:
        store = stores[n % len(stores)]
        got = await store.claim(worker=f"w{n}", token="w", free=BIG, queues=["default"], limit=1)
        for attempt in got:
            await store.finish(
                attempt["task"], attempt["execution_key"], exit_status="success",
                exit_code=0, usage=None, caller=WORKER,
            )  # fmt: skip
        return len(got)

    return await spread(tasks, concurrency, one)


async def run_backend(make: Callable[[], Store], tasks: int, conc: int) -> dict[str, float]:
    store = make()
    await store.open()
    try:
        rates = {"submit": await submit(store, tasks, conc)}
        rates["cycle"] = await cycle([store], tasks, conc)
        rates["bulk"] = await bulk(store, tasks, conc)
    finally:
        await store.close()
    return rates


async def two_servers(url_one: str, url_two: str, tasks: int, conc: int) -> dict[str, float]:
    """The claim/finish cycle on one store, then on two stores over one database."""
    out = {}
    for label, url, count in (("1 server", url_one, 1), ("2 servers", url_two, 2)):
        stores: list[Store] = [PostgresStore(url) for _ in range(count)]
        await asyncio.gather(*(s.open() for s in stores))
        try:
            await stores[0].create_tasks(ONE * tasks, ADMIN)
            out[label] = await cycle(stores, tasks, conc)
        finally:
            await asyncio.gather(*(s.close() for s in stores))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--synchronous-commit", choices=["on", "off"], default="on")
    args = parser.parse_args()
    tasks, conc = max(100, min(args.tasks, 100_000)), max(1, min(args.concurrency, 128))
    reps = max(1, min(args.reps, 20))
    results: dict[str, dict[str, list[float]]] = {"sqlite": {}, "postgresql": {}}
    scaling: dict[str, list[float]] = {}
    settings = {"synchronous_commit": args.synchronous_commit}
    with Postgres(settings=settings) as pg, tempfile.TemporaryDirectory() as tmp:
        for rep in range(reps):
            backends = ["sqlite", "postgresql"] if rep % 2 == 0 else ["postgresql", "sqlite"]
            for backend in backends:
                if backend == "sqlite":
                    path = Path(tmp) / f"bench-{rep}.db"

                    def make(path: Path = path) -> Store:
                        return SqliteStore(path)
                else:
                    url = pg.new_database_sync("bench")

                    def make(url: str = url) -> Store:
                        return PostgresStore(url, pool_size=conc)

                rates = asyncio.run(run_backend(make, tasks, conc))
                for what, rate in rates.items():
                    results[backend].setdefault(what, []).append(rate)
            two = asyncio.run(
                two_servers(pg.new_database_sync("one"), pg.new_database_sync("two"), tasks, conc)
            )
            for label, rate in two.items():
                scaling.setdefault(label, []).append(rate)
    print(
        f"{reps} repetitions, {tasks} tasks, {conc} concurrent callers, in process, "
        f"PostgreSQL synchronous_commit={args.synchronous_commit}"
    )
    print(f"{'operation':<30}{'SQLite /s':>12}{'PG /s':>12}{'PG/SQLite (range)':>24}")
    for what, unit in (("submit", "single creates"), ("bulk", "tasks in bulk"),
                       ("cycle", "claim+finish")):  # fmt: skip
        lite, pg_rates = results["sqlite"][what], results["postgresql"][what]
        ratios = sorted(p / s for p, s in zip(pg_rates, lite, strict=True))
        print(
            f"{what + ' (' + unit + ')':<30}"
            f"{statistics.median(lite):>12.0f}{statistics.median(pg_rates):>12.0f}"
            f"{statistics.median(ratios):>12.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"
        )
    one, two_rates = scaling["1 server"], scaling["2 servers"]
    ratios = sorted(t / o for t, o in zip(two_rates, one, strict=True))
    print(
        f"PG claim+finish: 1 server {statistics.median(one):.0f}/s, 2 servers "
        f"{statistics.median(two_rates):.0f}/s, ratio {statistics.median(ratios):.2f} "
        f"({ratios[0]:.2f}-{ratios[-1]:.2f})"
    )


if __name__ == "__main__":
    main()
