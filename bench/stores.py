"""SQLite against PostgreSQL, and one PostgreSQL server against two, in one run.

    .venv/bin/python bench/stores.py [--quick] [--reps R] [--tasks N]
        [--singles N] [--bulk N] [--query-rows N] [--json PATH]

Three setups, each a real ``banyan-server`` (or two) with durable commits:
``sqlite`` (synchronous=FULL, a temp file), ``pg`` (one server on a fresh
database of a throwaway PostgreSQL cluster from ``testbed.postgres``, fsync
and synchronous_commit on, as in production) and ``pg2`` (two servers on one
such database, the load spread over both). Every repetition runs each
figure on each setup in turn (sqlite, pg, pg2, then again), so a slow spell
of this shared machine falls on all of them alike; each setup gets fresh
servers and a fresh database per figure.

- dispatch capacity: N available ``true`` tasks, then 4 simulated workers
  (``bench/dispatch.py``'s, the real protocol; on pg2 two on each server)
  claim and finish as fast as the server(s) allow: tasks/s;
- single POSTs: 64 concurrent clients (pg2: 32 on each server): tasks/s;
- bulk POSTs: lists of 10,000 tasks, one after another (sqlite and pg): tasks/s;
- a query on a big table: ``--query-rows`` tasks (1 M by default) filled
  once per store by bulk POSTs (``bench/query.py``'s), then its queries
  timed alternately on both: the median of the per-query medians, ms.

With each load: the CPU per task of the Banyan server(s) and of PostgreSQL
(the postmaster and its backends, from /proc): where the time goes, for the
estimate of separate machines. Printed: each figure's median and range per setup, then the ratios
PostgreSQL/SQLite and two servers/one, each the median of the per-repetition
ratios with their range. Every loop is bounded; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp

try:
    from bench import measure, printing, query, servers
except ImportError:  # run as a script: put the repository root (bench/, testbed/) on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import measure, printing, query, servers

from bench.dispatch import SimWorker
from testbed.postgres import Postgres

LOOP_MAX_S = 120.0  # every load loop also stops after this long
SUBMIT_CHUNK = 5_000
BULK_LIST = 10_000
WARMUP = 200  # single POSTs before the clock starts
TASK = {"command": "true", "requested_resources": {"memory": "1 GiB"}}
SETUPS = ("sqlite", "pg", "pg2")
LABEL = {"sqlite": "SQLite", "pg": "PostgreSQL, 1 server", "pg2": "PostgreSQL, 2 servers"}


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of ``root`` and its children (PostgreSQL's postmaster
    and its backends, which stay connected through a run: pooled)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(entry.name) == root or int(fields[1]) == root:
            total += (int(fields[11]) + int(fields[12])) / measure.CLK_TCK
    return total


class Cpu:
    """CPU of the Banyan servers and of PostgreSQL over a block, per task."""

    def __init__(self, started: list[servers.BenchServer], postgres: Postgres | None) -> None:
        self.started = started
        self.postgres_pid = postgres.popen.pid if postgres and postgres.popen else None

    def read(self) -> tuple[float, float]:
        banyan = sum(s.cpu_seconds() for s in self.started)
        pg = tree_cpu_seconds(self.postgres_pid) if self.postgres_pid else 0.0
        return banyan, pg

    def start(self) -> None:
        self.begin = self.read()

    def per_task(self, name: str, tasks: int) -> dict[str, float]:
        """``{name + " Banyan CPU": ms/task, name + " PostgreSQL CPU": ms/task}``."""
        end = self.read()
        out = {f"{name}: Banyan server CPU (ms/task)": 1000 * (end[0] - self.begin[0]) / tasks}
        if self.postgres_pid:
            out[f"{name}: PostgreSQL CPU (ms/task)"] = 1000 * (end[1] - self.begin[1]) / tasks
        return out


class Setups:
    """Starts the servers of a setup: fresh database, fresh processes."""

    def __init__(self, tmp: Path, postgres: Postgres) -> None:
        self.tmp = tmp
        self.postgres = postgres
        self.count = itertools.count()

    def cpu(self, started: list[servers.BenchServer]) -> Cpu:
        return Cpu(started, self.postgres if started[0].db_url else None)

    def start(self, setup: str) -> list[servers.BenchServer]:
        n = next(self.count)
        if setup == "sqlite":
            first = servers.BenchServer(self.tmp, name=f"s{n}")
            first.start()
            return [first]
        url = self.postgres.new_database_sync("bench")
        first = servers.BenchServer(self.tmp, name=f"p{n}", db_url=url)
        first.start()
        started = [first]
        if setup == "pg2":
            second = servers.BenchServer(self.tmp, name=f"p{n}b", db_url=url)
            second.client_file.write_text(first.client_file.read_text())  # the same admin token
            try:
                second.start()
            except BaseException:
                first.stop()
                raise
            started.append(second)
        return started


def stop(started: list[servers.BenchServer]) -> None:
    for server in started:
        server.stop()


async def submit(server: servers.BenchServer, count: int, task: dict[str, Any]) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as http:
        left = count
        while left > 0:
            k = min(SUBMIT_CHUNK, left)
            body = json.dumps([task] * k)
            async with http.post(f"{server.url}/tasks", data=body, headers=server.headers) as r:
                assert r.status == 201, await r.text()
            left -= k


async def dispatch(started: list[servers.BenchServer], cpu: Cpu, tasks: int) -> dict[str, float]:
    """Tasks/s handed out and taken back by 4 simulated workers (split over the servers)."""
    await submit(started[0], tasks, {"command": "true", "state": "available"})
    for server in started:
        server.wait_idle()
    goal, done, go = [tasks], asyncio.Event(), asyncio.Event()
    sims = [SimWorker(f"sim-{i}", 8, 32, goal, done) for i in range(4)]
    headers = {"Authorization": started[0].headers["Authorization"]}
    async with aiohttp.ClientSession(headers=headers) as wsh:
        jobs = [
            asyncio.create_task(s.run(wsh, started[i % len(started)].url, go))
            for i, s in enumerate(sims)
        ]
        await asyncio.sleep(1.0)  # every sim said hello
        cpu.start()
        t0 = time.perf_counter()
        go.set()
        with contextlib.suppress(TimeoutError):  # bounded: the rate of what was done by then
            await asyncio.wait_for(done.wait(), LOOP_MAX_S)
        wall = time.perf_counter() - t0
        accepted = sum(s.accepted for s in sims)
        used = cpu.per_task("dispatch", max(1, accepted))
        done.set()
        await asyncio.wait(jobs, timeout=10)
        for j in jobs:
            j.cancel()
    return {"dispatch (tasks/s)": accepted / wall, **used}


async def singles(started: list[servers.BenchServer], cpu: Cpu, total: int) -> dict[str, float]:
    """Tasks/s of single POSTs from 64 loops, spread evenly over the servers."""
    body = json.dumps(TASK).encode()
    connector = aiohttp.TCPConnector(limit=64)
    done = 0
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=60)
    ) as session:

        async def loop(
            server: servers.BenchServer, tickets: Any, limit: int, deadline: float
        ) -> None:
            nonlocal done
            while next(tickets) < limit and time.perf_counter() < deadline:
                async with session.post(
                    f"{server.url}/tasks", data=body, headers=server.headers
                ) as resp:
                    await resp.read()
                    if resp.status == 201:
                        done += 1

        warm, warm_deadline = itertools.count(), time.perf_counter() + 20
        await asyncio.gather(
            *(loop(started[i % len(started)], warm, WARMUP, warm_deadline) for i in range(64))
        )  # connections opened, caches warm: not counted
        done = 0
        tickets = itertools.count()
        cpu.start()
        t0 = time.perf_counter()
        deadline = t0 + LOOP_MAX_S
        await asyncio.gather(
            *(loop(started[i % len(started)], tickets, total, deadline) for i in range(64))
        )
        wall = time.perf_counter() - t0
    return {
        "single POSTs, 64 clients (tasks/s)": done / wall,
        **cpu.per_task("single POSTs", max(1, done)),
    }


async def bulk(started: list[servers.BenchServer], cpu: Cpu, lists: int) -> dict[str, float]:
    """Tasks/s of ``lists`` bulk POSTs of BULK_LIST tasks, one after another."""
    body = json.dumps([TASK] * BULK_LIST).encode()
    server = started[0]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        cpu.start()
        t0 = time.perf_counter()
        sent = 0
        for _ in range(lists):
            if time.perf_counter() - t0 > LOOP_MAX_S:
                break
            async with session.post(f"{server.url}/tasks", data=body, headers=server.headers) as r:
                await r.read()
                assert r.status == 201, r.status
            sent += BULK_LIST
        rate = sent / (time.perf_counter() - t0)
    return {"bulk POSTs (tasks/s)": rate, **cpu.per_task("bulk POSTs", max(1, sent))}


Figure = Callable[[list[servers.BenchServer], Cpu], Coroutine[Any, Any, dict[str, float]]]


def run_figures(
    setups: Setups, reps: int, figures: dict[str, tuple[Figure, tuple[str, ...]]]
) -> dict[str, dict[str, list[float]]]:
    """Each figure on each of its setups in turn, ``reps`` times."""
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for rep in range(reps):
        for measure_it, on in figures:
            for setup in on:
                started = setups.start(setup)
                try:
                    found = asyncio.run(measure_it(started, setups.cpu(started)))
                finally:
                    stop(started)
                for name, value in found.items():
                    values[name][setup].append(value)
                    print(f"  rep {rep + 1}: {name} on {setup}: {value:,.3g}", flush=True)
    return values


def queries_alternating(setups: Setups, rows: int, reps: int) -> dict[str, dict[str, list[float]]]:
    """Fill ``rows`` tasks once per store, then time the queries alternately."""
    started = {s: setups.start(s) for s in ("sqlite", "pg")}
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    try:
        for setup, (server,) in started.items():
            filled = asyncio.run(query.fill(server, rows))
            print(f"  filled {filled['rows']:,} rows on {setup} in {filled['wall_s']:.0f} s")
            values["fill (bulk POSTs)"][setup].append(filled["rows"] / filled["wall_s"])
            server.wait_idle()
        for rep in range(reps):
            for setup, (server,) in started.items():
                timed = asyncio.run(query.time_queries(server, rows, 5))
                median = statistics.median(q["p50_ms"] for q in timed)
                values[f"query, {rows:,} tasks (median ms)"][setup].append(median)
                for q in timed:
                    values[f"  {q['label']} (ms)"][setup].append(q["p50_ms"])
                print(f"  rep {rep + 1}: queries on {setup}: median {median:.1f} ms", flush=True)
    finally:
        for pair in started.values():
            stop(pair)
    return values


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{printing.fmt(med)} ({printing.fmt(min(values))}-{printing.fmt(max(values))})"


def ratio(top: list[float], bottom: list[float]) -> tuple[float, str]:
    """Median of the paired ratios, and the text with their range."""
    pairs = [a / b for a, b in zip(top, bottom, strict=False) if b]
    if not pairs:
        return float("nan"), "-"
    med = statistics.median(pairs)
    return med, f"{med:.2f}x ({min(pairs):.2f}-{max(pairs):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 repetitions")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument("--tasks", type=int, default=None, help="dispatch tasks (20,000)")
    parser.add_argument("--singles", type=int, default=None, help="single POSTs (5,000)")
    parser.add_argument("--bulk", type=int, default=None, help="bulk lists of 10,000 (5)")
    parser.add_argument(
        "--query-rows", type=int, default=None, help="tasks for the query (1,000,000)"
    )
    printing.add_json_option(parser)
    args = parser.parse_args()
    reps = args.reps or (2 if args.quick else 3)
    tasks = args.tasks or (3_000 if args.quick else 20_000)
    single_n = args.singles or (1_500 if args.quick else 5_000)
    lists = args.bulk or (2 if args.quick else 5)
    rows = args.query_rows or (50_000 if args.quick else 1_000_000)
    printing.print_machine("SQLite vs PostgreSQL, one vs two servers (durable commits)")
    figures: list[tuple[Figure, tuple[str, ...]]] = [
        (lambda s, c: dispatch(s, c, tasks), SETUPS),
        (lambda s, c: singles(s, c, single_n), SETUPS),
        (lambda s, c: bulk(s, c, lists), ("sqlite", "pg")),
    ]
    with tempfile.TemporaryDirectory(prefix="banyan-stores-") as tmp_name, Postgres() as pg:
        setups = Setups(Path(tmp_name), pg)
        values = run_figures(setups, reps, figures)
        values.update(queries_alternating(setups, rows, reps))
    print()
    printing.print_table(
        ["figure", *(LABEL[s] for s in SETUPS)],
        [[name, *(spread(by.get(s, [])) for s in SETUPS)] for name, by in values.items()],
    )
    report = printing.Report("stores", quick=args.quick)
    rows_out = []
    for name, by in values.items():
        lower_is_better = "ms" in name
        if "CPU" in name:  # context for the paper estimate, not a target
            pg_ratio, pg_text = ratio(by.get("pg", []), by.get("sqlite", []))
            rows_out.append([name, pg_text, ratio(by.get("pg2", []), by.get("pg", []))[1]])
            continue
        pg_ratio, pg_text = ratio(by.get("pg", []), by.get("sqlite", []))
        two_ratio, two_text = ratio(by.get("pg2", []), by.get("pg", []))
        rows_out.append([name, pg_text, two_text])
        if name.startswith("  "):
            continue
        # Targets (issue 14): PostgreSQL within 0.7x of SQLite, two servers no slower than one.
        if lower_is_better:
            report.add(f"PG/SQLite time, {name}", pg_ratio, "x", at_most=1 / 0.7, note=pg_text)
        else:
            report.add(f"PG/SQLite, {name}", pg_ratio, "x", at_least=0.7, note=pg_text)
        if by.get("pg2"):
            report.add(f"two/one PG servers, {name}", two_ratio, "x", at_least=1.0, note=two_text)
    print()
    printing.print_table(["figure", "PostgreSQL / SQLite", "two servers / one"], rows_out)
    print(
        "ratios: the median of the per-repetition ratios (range in brackets); for times "
        "(ms) above 1 means PostgreSQL is slower, for rates below 1 means it is slower."
    )
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
