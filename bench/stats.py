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
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp

try:
    from bench import measure, printing, servers
except ImportError:  # run as a script: put the repository root (bench/, testbed/) on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import measure, printing, servers

from banyan.ids import new_ids
from server.stores.sqlite import schema

STATISTICS_OBJECTS = (
    ("TRIGGER", "task_counts_insert"),
    ("TRIGGER", "task_counts_update"),
    ("TRIGGER", "task_counts_delete"),
    ("TRIGGER", "attempt_durations_finish"),
    ("INDEX", "tasks_available_age"),
    ("INDEX", "attempts_terminated"),
)
RESOURCES = '{"cores":1,"memory":1073741824,"gpus":0}'
INSERT = (
    "INSERT INTO tasks (id, name, command, state, queue, priority, max_retry_count, "
    "pending_dependency_count, max_termination_time, estimated_runtime, requested_resources, "
    "cores, memory, gpus, owner, attempt, worker, exit_status, time_started, time_terminated, "
    "created, updated, etag) "
    "VALUES (?, ?, ?, ?, ?, 0, 0, ?, 600, ?, ?, 1, 1073741824, 0, 'bench', ?, ?, ?, ?, ?, ?, ?, "
    "'e')"
)
QUEUES = ["default"] * 6 + ["gpu"] * 2 + ["io"] + [f"batch-{i}" for i in range(10)]
TASK = {"command": "true", "requested_resources": {"memory": "1 GiB"}}
TARGET_MS = 50.0  # a statistics read at 1 M tasks


def open_db(
    path: Path, *, statistics: bool = True, synchronous: str = "FULL"
) -> sqlite3.Connection:
    """The schema the server would make; ``statistics=False`` drops what
    migration 3 adds to the write path (its triggers and indexes)."""
    conn = sqlite3.connect(path, isolation_level=None)
    schema.configure(conn, synchronous=synchronous, busy_timeout_ms=10_000)
    schema.migrate(conn)
    if not statistics:
        for kind, name in STATISTICS_OBJECTS:
            conn.execute(f"DROP {kind} IF EXISTS {name}")
    return conn


def task_row(
    task_id: str,
    *,
    state: str,
    queue: str = "default",
    created: float,
    pending: int = 0,
    estimate: float | None = None,
    started: float | None = None,
    ended: float | None = None,
    name: str | None = None,
) -> tuple[Any, ...]:
    attempt = 1 if started is not None else 0
    worker = "bench-worker" if started is not None else None
    exit_status = "success" if state == "terminated" else None
    return (
        task_id, name, "true", state, queue, pending, estimate, RESOURCES, attempt, worker,
        exit_status, started, ended, created, ended or started or created,
    )  # fmt: skip


# --- (a) write cost ------------------------------------------------------------


def timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def write_rates(tmp: Path, rows: int, *, statistics: bool, run: int) -> dict[str, float]:
    path = tmp / f"writes-{int(statistics)}-{run}.db"
    conn = open_db(path, statistics=statistics)
    now = time.time()
    ids = new_ids(rows, now)
    tasks = [
        task_row(i, state="available" if k % 2 else "inactive", created=now, queue=QUEUES[k % 19])
        for k, i in enumerate(ids)
    ]
    available = ids[1::2]

    def insert() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, tasks)
        conn.execute("COMMIT")

    def claims() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "UPDATE tasks SET state = 'running', attempt = attempt + 1, worker = 'w', "
            "time_started = ?, updated = ? WHERE id = ?",
            ((now + 1, now + 1, i) for i in available),
        )
        conn.executemany(
            "INSERT INTO attempts (task_id, attempt, execution_key, worker, token, time_started) "
            "VALUES (?, 1, 'k', 'w', 'w', ?)",
            ((i, now + 1) for i in available),
        )
        conn.execute("COMMIT")

    def finishes() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "UPDATE attempts SET time_terminated = ?, exit_status = 'success' "
            "WHERE task_id = ? AND attempt = 1",
            ((now + 2 + k * 0.001, i) for k, i in enumerate(available)),
        )
        conn.executemany(
            "UPDATE tasks SET state = 'terminated', exit_status = 'success', time_terminated = ?, "
            "updated = ? WHERE id = ?",
            ((now + 2, now + 2, i) for i in available),
        )
        conn.execute("COMMIT")

    try:
        return {
            "insert": rows / timed(insert),
            "claim": len(available) / timed(claims),
            "finish": len(available) / timed(finishes),
        }
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


async def http_bulk_rate(
    tmp: Path, *, statistics: bool, lists: int, per_list: int, run: int
) -> float:
    name = f"bulk-{int(statistics)}-{run}"
    open_db(tmp / f"{name}.db", statistics=statistics).close()
    server = servers.start_server(tmp, name=name)
    try:
        body = json.dumps([TASK] * per_list).encode()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            # one small list first: connection and caches warm
            async with session.post(
                f"{server.url}/tasks", data=json.dumps([TASK] * 100), headers=server.headers
            ) as resp:
                assert resp.status == 201, await resp.text()
            t0 = time.perf_counter()
            for _ in range(lists):
                async with session.post(
                    f"{server.url}/tasks", data=body, headers=server.headers
                ) as resp:
                    assert resp.status == 201, await resp.text()
                    await resp.read()
            return lists * per_list / (time.perf_counter() - t0)
    finally:
        server.stop()
        for path in tmp.glob(f"{name}.db*"):
            path.unlink()


# --- (b) fill --------------------------------------------------------------------


def lognormal(rng: random.Random, median_s: float, low: float, high: float) -> float:
    return min(high, max(low, rng.lognormvariate(0, 1.2) * median_s))


def fill(path: Path, rows: int, now: float, seed: int = 7) -> dict[str, Any]:
    """``rows`` tasks as described in the module docstring; returns the ids
    the reads use and what the counts should come to."""
    rng = random.Random(seed)
    conn = open_db(path, synchronous="OFF")  # setting up, not measured: no fsyncs
    ids = iter(new_ids(rows, now - 4000))
    big_tree, big_edges = tree_rows(ids, rng, now, fanout=(10, 10, 10), diamonds=True)
    root = big_tree[0][0]
    tasks: list[tuple[Any, ...]] = list(big_tree)
    edges = list(big_edges)
    for _ in range(50):
        small, small_edges = tree_rows(ids, rng, now, fanout=(10, 10), diamonds=False)
        tasks += small
        edges += small_edges
    opened: list[tuple[str, float]] = []
    ended: list[tuple[float, str]] = []
    available_id = ""
    for task_id in ids:
        roll = rng.random()
        queue = rng.choice(QUEUES)
        if roll < 0.30:
            end = now - rng.uniform(0.001, 899.5)
            run = lognormal(rng, 5.0, 0.01, 600)
            wait = lognormal(rng, 30.0, 0.0, 3000)
            tasks.append(
                task_row(task_id, state="terminated", queue=queue, created=end - run - wait,
                         started=end - run, ended=end)
            )  # fmt: skip
            opened.append((task_id, end - run))
            ended.append((end, task_id))
        elif roll < 0.35:
            tasks.append(task_row(task_id, state="cancelled", queue=queue, created=now - 3000))
        elif roll < 0.36:
            start = now - rng.uniform(0, 600)
            tasks.append(
                task_row(task_id, state="running", queue=queue, created=start - 10, started=start)
            )
            opened.append((task_id, start))
        elif roll < 0.66:
            created = now - rng.uniform(0, 3600)
            tasks.append(task_row(task_id, state="available", queue=queue, created=created))
            available_id = available_id or task_id
        else:
            tasks.append(task_row(task_id, state="inactive", queue=queue, created=now - 3600))
    t0 = time.perf_counter()
    for chunk in batches(tasks, 100_000):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, chunk)
        conn.execute("COMMIT")
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO continuations (parent, child, position) VALUES (?, ?, ?)", edges)
    conn.execute("COMMIT")
    # Attempts go in open and are then ended, as claims and finishes do, so the
    # finish trigger sees every one.
    for chunk in batches(opened, 100_000):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO attempts (task_id, attempt, execution_key, worker, token, time_started) "
            "VALUES (?, 1, 'k', 'bench-worker', 'bench', ?)",
            chunk,
        )
        conn.execute("COMMIT")
    ended.sort()  # in the order they would have finished
    for chunk in batches(ended, 100_000):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "UPDATE attempts SET time_terminated = ?, exit_status = 'success' "
            "WHERE task_id = ? AND attempt = 1",
            chunk,
        )
        conn.execute("COMMIT")
    fill_s = time.perf_counter() - t0
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no ANALYZE: the server never runs one
    conn.close()
    return {
        "root": root,
        "tree_size": len(big_tree),
        "available": available_id,
        "rows": len(tasks),
        "finished": len(ended),
        "fill_s": fill_s,
    }


def tree_rows(
    ids: Iterator[str],
    rng: random.Random,
    now: float,
    *,
    fanout: tuple[int, ...],
    diamonds: bool,
) -> tuple[list[tuple[Any, ...]], list[tuple[str, str, int]]]:
    """A continuation tree: the root (terminated), then levels of ``fanout``
    children per node; with ``diamonds`` each node of the last level also
    waits on a second parent of the level above."""
    levels: list[list[str]] = [[next(ids)]]
    edges: list[tuple[str, str, int]] = []
    for width in fanout:
        level: list[str] = []
        for parent in levels[-1]:
            for position in range(width):
                child = next(ids)
                level.append(child)
                edges.append((parent, child, position))
        levels.append(level)
    parents: dict[str, int] = {}
    for _, child, _ in edges:
        parents[child] = parents.get(child, 0) + 1
    if diamonds and len(levels) > 2:
        above = levels[-2]
        for k, child in enumerate(levels[-1]):
            other = above[(k // fanout[-1] + 1) % len(above)]
            edges.append((other, child, 100 + k))
            parents[child] += 1
    rows = []
    for depth, level in enumerate(levels):
        for task_id in level:
            estimate = rng.choice([None, 30.0, 60.0, 600.0])
            if depth == 0:
                end = now - 600
                rows.append(task_row(task_id, state="terminated", created=end - 20,
                                     started=end - 10, ended=end, estimate=estimate))  # fmt: skip
            elif depth == 1:
                rows.append(task_row(task_id, state="available", created=now - 700,
                                     estimate=estimate))  # fmt: skip
            else:
                rows.append(task_row(task_id, state="inactive", created=now - 700,
                                     pending=parents[task_id], estimate=estimate))  # fmt: skip
    return rows, edges


def batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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
        print(f"== (a) write cost of the statistics triggers ({writes:,} rows, best of {repeats})")
        table = []
        rates: dict[bool, dict[str, float]] = {False: {}, True: {}}
        for run in range(repeats):  # interleaved, so both see the same machine
            for with_stats in (False, True):
                got = write_rates(tmp, writes, statistics=with_stats, run=run)
                for kind, rate in got.items():
                    rates[with_stats][kind] = max(rate, rates[with_stats].get(kind, 0.0))
        for kind in ("insert", "claim", "finish"):
            without, with_ = rates[False][kind], rates[True][kind]
            table.append(
                [f"{kind} (executemany, 1 txn)", without, with_, (with_ / without - 1) * 100]
            )
        lists, per_list = (2, 5_000) if args.quick else (10, 10_000)
        http = {False: 0.0, True: 0.0}
        for run in range(repeats):
            for with_stats in (False, True):
                rate = await http_bulk_rate(
                    tmp, statistics=with_stats, lists=lists, per_list=per_list, run=run
                )
                http[with_stats] = max(http[with_stats], rate)
        table.append([f"bulk POST /tasks ({lists} x {per_list:,})", http[False], http[True],
                      (http[True] / http[False] - 1) * 100])  # fmt: skip
        printing.print_table(["rows/s", "without", "with triggers", "change %"], table)
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
