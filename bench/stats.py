"""Statistics at scale: ``GET /stats`` and ``GET /tasks/{id}/stats`` on a
database of 1,000,000 tasks through a real ``banyan-server``, and what the
statistics triggers (schema migration 3) cost every write.

    .venv/bin/python bench/stats.py [--rows N] [--quick] [--dir DIR]

(a) write cost, straight on SQLite with the server's pragmas (WAL,
    synchronous=FULL), one transaction each: a 100,000-row executemany of task
    inserts, 100,000 claims (state update + attempt insert) and 100,000
    finishes (attempt end + state update), on the current schema with and
    without migration 3's triggers and indexes; then bulk ``POST /tasks`` of
    100,000 tasks (10 lists of 10,000) to a real server, both ways. Each is
    the best of 3 runs, the two variants interleaved.
(b) fill: ``--rows`` tasks in queues of different sizes, 30 % terminated with
    one attempt each ending over the last 15 minutes, some cancelled, running,
    available and held, 50 trees of 111 tasks and one tree of 1,111 (its last
    level joins two parents each: diamonds).
(c) reads: ``GET /stats``, ``GET /tasks/{root}/stats`` over the 1,111-task
    tree and ``GET /tasks/{id}/pending_reason``, sequential from one client
    (median, p95, max); beside them, the plain GROUP BY and exact percentile
    scan that the triggers make unnecessary, timed on the same file.

Figures are printed, never asserted. ``--quick``: 100,000 rows, 10,000 writes.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

try:
    from bench import measure, printing, servers
except ImportError:  # run as a script: put the repository root (bench/, testbed/) on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import measure, printing, servers
from bench.stats_fill import fill
from bench.stats_writes import write_cost

TARGET_MS = 50.0  # a statistics read at 1 M tasks


# --- (c) reads ---------------------------------------------------------------


async def latencies(server: servers.BenchServer, path: str, count: int) -> tuple[list[float], Any]:
    async with aiohttp.ClientSession() as session:
        body: Any = None
        for _ in range(5):  # warm: connection, page cache
            async with session.get(server.url + path, headers=server.headers) as resp:
                body = await resp.json()
                assert resp.status == 200, body
        times = []
        for _ in range(count):
            t0 = time.perf_counter()
            async with session.get(server.url + path, headers=server.headers) as resp:
                await resp.read()
            times.append(time.perf_counter() - t0)
        return times, body


def baseline(path: Path, now: float, repeats: int = 3) -> list[list[Any]]:
    """The plain queries the triggers stand in for, on the same file."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    queries = [
        ("GROUP BY queue, state over tasks",
         "SELECT queue, state, count(*) FROM tasks GROUP BY 1, 2", ()),
        ("count of attempts ended in 15 min (index)",
         "SELECT count(*) FROM attempts WHERE time_terminated >= ?", (now - 900,)),
        ("exact wait/run percentiles (fetch + sort)",
         "SELECT a.time_started - t.created, a.time_terminated - a.time_started "
         "FROM attempts a JOIN tasks t ON t.id = a.task_id WHERE a.time_terminated >= ?",
         (now - 900,)),
    ]  # fmt: skip
    out = []
    for label, sql, params in queries:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            rows = conn.execute(sql, params).fetchall()
            if len(rows) > 1:
                sorted(r[0] for r in rows)
                sorted(r[1] for r in rows)
            times.append(time.perf_counter() - t0)
        out.append([label, statistics.median(times) * 1000])
    conn.close()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=None, help="tasks in the database (1,000,000)")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    printing.add_json_option(parser)
    args = parser.parse_args()
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    report = printing.Report("stats", quick=args.quick)
    writes = 10_000 if args.quick else 100_000
    requests = 50 if args.quick else 200
    repeats = 1 if args.quick else 3

    printing.print_machine("banyan statistics benchmark" + (" (--quick)" if args.quick else ""))
    with tempfile.TemporaryDirectory(prefix="banyan-bench-", dir=args.dir) as tmp_name:
        tmp = Path(tmp_name)
        await write_cost(tmp, writes=writes, repeats=repeats, quick=args.quick)
        print()

        print(f"== (b) fill: {rows:,} tasks")
        db = tmp / "big.db"
        now = time.time()
        info = fill(db, rows, now)
        print(
            f"{info['rows']:,} tasks, {info['finished']:,} attempts ended over the last 15 min, "
            f"tree of {info['tree_size']:,}; inserted in {info['fill_s']:.1f} s "
            f"({info['rows'] / info['fill_s']:,.0f} tasks/s with triggers, synchronous=OFF)"
        )
        print()

        print(f"== (c) reads through a real server ({requests} sequential requests each)")
        server = servers.start_server(tmp, name="big")
        try:
            server.wait_idle(max_s=30)
            reads = []
            checks = []
            tree_label = f"GET /tasks/{{root}}/stats ({info['tree_size']:,} tasks)"
            for label, path in (
                ("GET /stats", "/stats"),
                (tree_label, f"/tasks/{info['root']}/stats"),
                ("GET /tasks/{id}/pending_reason", f"/tasks/{info['available']}/pending_reason"),
            ):
                times, body = await latencies(server, path, requests)
                ms = [t * 1000 for t in times]
                reads.append([label, statistics.median(ms), measure.percentile(ms, 95), max(ms)])
                checks.append(body)
            printing.print_table(["request", "median ms", "p95 ms", "max ms"], reads)
            for label, median_ms, *_ in reads:
                report.add(
                    f"{label} on {info['rows']:,} tasks (p50)", median_ms, "ms", at_most=TARGET_MS
                )
            report.write(args.json)
            overview, tree, reason = checks
            print(
                f"check: /stats total {overview['tasks']['total']:,} (expected {info['rows']:,}), "
                f"15m throughput {overview['throughput']['15m']:,}, run p50/p99 "
                f"{overview['run_time_s']['p50']}/{overview['run_time_s']['p99']} s; tree total "
                f"{tree['total']:,} (expected {info['tree_size']:,}); pending_reason "
                f"{reason['code']!r}"
            )
            print()
            print("== what the triggers replace, timed on the same file (median of 3)")
            printing.print_table(["plain query", "ms"], baseline(db, time.time()))
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
