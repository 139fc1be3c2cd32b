"""Collection queries on a large table, through a real ``banyan-server``.

    .venv/bin/python bench/query.py [--rows N] [--quick]

Fills a fresh database with N tasks (default 1,000,000; 100,000 with --quick)
through bulk POSTs of 50,000 (names "task i", 5 queues, priorities 0-9, about
10% ``available``, the rest ``inactive``), then times common ``GET /tasks``
queries (median and p95 over up to 50 repetitions after a warm-up). Each
response carries ``_meta.total``, a COUNT(*) over the whole match; so after
the server stops, the same SQL (``server.stores.sqlite.sqlquery.page_sql``) is
timed on the file directly, SELECT and COUNT apart, with its EXPLAIN QUERY PLAN.

Every loop is bounded in count and time; figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
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

CHUNK = 50_000
FILL_MAX_S = 420.0  # the fill stops after this long, whatever --rows says
QUERY_MAX_S = 30.0  # per query, HTTP repetitions
SQL_MAX_S = 10.0  # per statement, direct SQLite repetitions
WARMUP = 3
SLOW_MS = 20.0  # the target for a filtered page at 1 M rows


def make_chunk(start: int, count: int, rng: random.Random) -> bytes:
    items = [
        {
            "name": f"task {i}",
            "command": "true",
            "queue": f"q{rng.randrange(5)}",
            "priority": rng.randrange(10),
            "state": "available" if rng.random() < 0.1 else "inactive",
            "requested_resources": {"memory": "1 GiB"},
        }
        for i in range(start, start + count)
    ]
    return json.dumps(items, separators=(",", ":")).encode()


def queries(rows: int) -> list[tuple[str, dict[str, str]]]:
    name = 123_456 if rows > 123_456 else rows // 2  # a name that exists
    w = json.dumps
    return [
        ("name =", {"where": w({"name": f"task {name}"})}),
        (
            "state+queue, -priority",
            {
                "where": w({"state": "available", "queue": "q3"}),
                "sort": "-priority",
                "max_results": "25",
            },
        ),
        ("retry_count $lt", {"where": w({"retry_count": {"$lt": 10}}), "max_results": "25"}),
        ("priority $gte, sort", {"where": w({"priority": {"$gte": 8}}), "sort": "-priority,_id"}),
        ("page=1000", {"page": "1000", "max_results": "25"}),
        ("owner+state", {"where": w({"owner": "local-admin", "state": "inactive"})}),
    ]


def url_text(params: dict[str, str]) -> str:
    return "/tasks?" + "&".join(f"{k}={v}" for k, v in params.items())


async def fill(server: servers.BenchServer, rows: int) -> dict[str, Any]:
    rng = random.Random(20240601)
    timeout = aiohttp.ClientTimeout(total=600)
    post_s = 0.0
    done = 0
    async with aiohttp.ClientSession(timeout=timeout) as session:
        with measure.Meter(server) as m:
            start = time.perf_counter()
            while done < rows:
                if time.perf_counter() - start > FILL_MAX_S:
                    print(
                        f"  fill stopped after {FILL_MAX_S:.0f} s at {done:,} rows", file=sys.stderr
                    )
                    break
                count = min(CHUNK, rows - done)
                body = make_chunk(done, count, rng)
                t0 = time.perf_counter()
                async with session.post(
                    f"{server.url}/tasks", data=body, headers=server.headers
                ) as resp:
                    data = await resp.read()
                    status = resp.status
                post_s += time.perf_counter() - t0
                if status != 201:
                    raise RuntimeError(f"bulk POST failed: {status} {data[:300]!r}")
                done += count
    return {
        "rows": done,
        "wall_s": m.wall_s,
        "post_s": post_s,
        "server_cpu_s": m.server_cpu_s,
        "client_cpu_s": m.client_cpu_s,
        "other_cpu_s": m.other_cpu_s,
    }


async def time_queries(server: servers.BenchServer, rows: int, reps: int) -> list[dict[str, Any]]:
    out = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        for label, params in queries(rows):
            latencies: list[float] = []
            first: dict[str, Any] = {}
            size = 0
            start = time.perf_counter()
            for i in range(WARMUP + reps):
                if i >= WARMUP and time.perf_counter() - start > QUERY_MAX_S:
                    break
                t0 = time.perf_counter()
                async with session.get(
                    f"{server.url}/tasks", params=params, headers=server.headers
                ) as resp:
                    data = await resp.read()
                    status = resp.status
                elapsed = time.perf_counter() - t0
                if status != 200:
                    raise RuntimeError(f"{url_text(params)}: {status} {data[:300]!r}")
                if i == 0:
                    first = json.loads(data)
                    size = len(data)
                if i >= WARMUP:
                    latencies.append(elapsed)
            out.append(
                {
                    "label": label,
                    "params": params,
                    "reps": len(latencies),
                    "p50_ms": measure.percentile(latencies, 50) * 1000,
                    "p95_ms": measure.percentile(latencies, 95) * 1000,
                    "items": len(first.get("_items", [])),
                    "total": first.get("_meta", {}).get("total"),
                    "bytes": size,
                }
            )
    return out


def sql_for(params: dict[str, str]) -> tuple[str, str, list[Any]]:
    """The SELECT and COUNT the server runs for these query arguments."""
    from banyan import constants
    from banyan.fields import TASK_FIELDS
    from banyan.projection import parse_max_results, parse_page, parse_sort
    from banyan.query import parse_where
    from server.stores.base import Query
    from server.stores.sqlite.rows import TASK_COLUMNS
    from server.stores.sqlite.sqlquery import TASK_QUERY_COLUMNS, page_sql

    query = Query(
        where=parse_where(params.get("where"), TASK_FIELDS),
        sort=parse_sort(params.get("sort"), TASK_FIELDS),
        page=parse_page(params.get("page")),
        max_results=parse_max_results(
            params.get("max_results"),
            default=constants.DEFAULT_MAX_RESULTS,
            limit=constants.MAX_RESULTS_LIMIT,
        ),
    )
    return page_sql(query, TASK_QUERY_COLUMNS, table="tasks", columns=TASK_COLUMNS)


def time_sql(conn: sqlite3.Connection, sql: str, params: list[Any]) -> float:
    """Median ms of up to 5 runs (after one warm-up), bounded in time."""
    conn.execute(sql, params).fetchall()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 and time.perf_counter() - start < SQL_MAX_S:
        t0 = time.perf_counter()
        conn.execute(sql, params).fetchall()
        times.append(time.perf_counter() - t0)
    return measure.percentile(times, 50) * 1000


def plan(conn: sqlite3.Connection, sql: str, params: list[Any]) -> list[str]:
    return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


def analyse(db: Path, results: list[dict[str, Any]]) -> None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        for r in results:
            select, count, params = sql_for(r["params"])
            r["select_ms"] = time_sql(conn, select, params)
            r["count_ms"] = time_sql(conn, count, params[:-2])
            r["select_sql"], r["count_sql"], r["sql_params"] = select, count, params
            r["select_plan"] = plan(conn, select, params)
            r["count_plan"] = plan(conn, count, params[:-2])
    finally:
        conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=None, help="tasks to fill (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="100,000 rows, fewer repetitions")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per query (50)")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary directory")
    printing.add_json_option(parser)
    args = parser.parse_args()
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    reps = args.reps or (20 if args.quick else 50)
    report = printing.Report("query", quick=args.quick)

    printing.print_machine("banyan query benchmark" + (" (--quick)" if args.quick else ""))
    with tempfile.TemporaryDirectory(prefix="banyan-bench-", dir=args.dir) as tmp_name:
        tmp = Path(tmp_name)
        print(f"database directory: {tmp}")
        server = servers.start_server(tmp, name="query", synchronous="FULL")
        try:
            filled = await fill(server, rows)
            rows = filled["rows"]
            settle_cpu0 = server.cpu_seconds()
            filled["settle_s"] = server.wait_idle(max_s=120)
            filled["settle_cpu_s"] = server.cpu_seconds() - settle_cpu0
            db_bytes = sum(p.stat().st_size for p in tmp.glob("query.db*"))
            results = await time_queries(server, rows, reps)
        finally:
            server.stop()
        analyse(server.db, results)

    print(f"fill: {rows:,} tasks in bulk POSTs of {CHUNK:,}, synchronous=FULL, one after another")
    printing.print_table(
        [
            "rows",
            "wall s",
            "tasks/s (wall)",
            "tasks/s (in POST)",
            "srv cpu s",
            "cli cpu s",
            "other cpu %",
            "db MiB",
        ],
        [
            [
                rows,
                filled["wall_s"],
                rows / filled["wall_s"],
                rows / filled["post_s"],
                filled["server_cpu_s"],
                filled["client_cpu_s"],
                filled["other_cpu_s"] / filled["wall_s"] * 100,
                db_bytes / 2**20,
            ]
        ],
    )
    print(
        "(tasks/s (wall) includes building each JSON body in the client; 'in POST' is the "
        "request time alone)"
    )
    print(
        f"after the last POST the server stayed busy for {filled['settle_s']:.1f} s "
        f"({filled['settle_cpu_s']:.1f} s CPU, e.g. the event hub catching up); queries start "
        "once it is idle\n"
    )

    print(
        f"GET /tasks on {rows:,} rows: HTTP median/p95 over the repetitions (after {WARMUP} "
        "warm-ups); then the server's own SQL run on the file directly (median of 5)"
    )
    printing.print_table(
        [
            "query",
            "reps",
            "p50 ms",
            "p95 ms",
            "items",
            "_meta.total",
            "KiB",
            "SELECT ms",
            "COUNT ms",
        ],
        [
            [
                r["label"],
                r["reps"],
                r["p50_ms"],
                r["p95_ms"],
                r["items"],
                r["total"],
                r["bytes"] / 1024,
                r["select_ms"],
                r["count_ms"],
            ]
            for r in results
        ],
    )
    print()
    for r in results:
        slow = "  <-- over 20 ms" if r["p50_ms"] > SLOW_MS else ""
        print(f"{r['label']}: {url_text(r['params'])}{slow}")
        print(f"  SELECT: {r['select_sql'].split(' FROM ', 1)[1]}  {r['sql_params']}")
        for line in r["select_plan"]:
            print(f"    plan: {line}")
        print(f"  COUNT:  {r['count_sql']}")
        for line in r["count_plan"]:
            print(f"    plan: {line}")
    report.add(f"bulk fill of {rows:,} tasks", rows / filled["wall_s"], "tasks/s")
    for r in results:
        report.add(
            f"GET /tasks on {rows:,}: {r['label']} (p50)",
            r["p50_ms"],
            "ms",
            at_most=SLOW_MS,
            note=f"_meta.total {r['total']:,}" if r["total"] is not None else "",
        )
    report.write(args.json)
    print(
        f"\nbackground load at the end: {measure.background_cores():.2f} CPUs busy "
        "with other processes"
    )


if __name__ == "__main__":
    asyncio.run(main())
