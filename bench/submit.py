"""Submission throughput of a real ``banyan-server``.

    .venv/bin/python bench/submit.py [--quick]

(a) single ``POST /tasks`` from 64 concurrent clients (one aiohttp session,
    connector limit 64, 64 coroutine loops), then from 1 client, at
    synchronous=FULL and at NORMAL: tasks/s, p50/p99 latency, CPU per request;
    then the same loads on a server that reports its group-commit counters
    (operations per committed transaction).
(b) bulk ``POST /tasks`` of one list of 100,000 tasks, and of 10 lists of
    10,000 (10,000 in all with --quick).

Every loop is bounded in requests and in time; figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

try:
    from bench import measure, printing, servers
except ImportError:  # run as a script: put the repository root (bench/, testbed/) on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import measure, printing, servers

TASK = {"command": "true", "requested_resources": {"memory": "1 GiB"}}
TASK_BODY = json.dumps(TASK).encode()
LOOP_MAX_S = 180.0  # every load loop also stops after this long
WARMUP_REQUESTS = 200
TARGET_SINGLE = 3_000  # tasks/s, single POSTs
TARGET_BULK = 50_000  # tasks/s, bulk POSTs


@dataclass
class Run:
    label: str
    requests: int
    errors: int
    wall_s: float
    latencies: list[float]
    server_cpu_s: float
    client_cpu_s: float
    other_cpu_s: float

    @property
    def rate(self) -> float:
        return self.requests / self.wall_s if self.wall_s else float("nan")


async def post_load(
    server: servers.BenchServer, *, total: int, concurrency: int, label: str, warmup: int = 0
) -> Run:
    """``total`` single POSTs from ``concurrency`` loops sharing one session."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    url = f"{server.url}/tasks"
    headers = server.headers
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def loop(
            tickets: itertools.count[int], limit: int, deadline: float, record: bool
        ) -> None:
            nonlocal errors
            while next(tickets) < limit and time.perf_counter() < deadline:
                t0 = time.perf_counter()
                async with session.post(url, data=TASK_BODY, headers=headers) as resp:
                    await resp.read()
                    ok = resp.status == 201
                if record:
                    latencies.append(time.perf_counter() - t0)
                    if not ok:
                        errors += 1

        if warmup:
            tickets = itertools.count()
            deadline = time.perf_counter() + 30
            await asyncio.gather(
                *(loop(tickets, warmup, deadline, False) for _ in range(concurrency))
            )
        with measure.Meter(server) as m:
            tickets = itertools.count()
            deadline = time.perf_counter() + LOOP_MAX_S
            await asyncio.gather(
                *(loop(tickets, total, deadline, True) for _ in range(concurrency))
            )
    return Run(
        label,
        len(latencies),
        errors,
        m.wall_s,
        latencies,
        m.server_cpu_s,
        m.client_cpu_s,
        m.other_cpu_s,
    )


async def bulk_load(
    server: servers.BenchServer, *, per_request: int, requests: int, label: str
) -> Run:
    """``requests`` sequential bulk POSTs of ``per_request`` tasks each; the body
    is serialised before the clock starts."""
    body = json.dumps([TASK] * per_request).encode()
    timeout = aiohttp.ClientTimeout(total=600)
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(timeout=timeout) as session:
        with measure.Meter(server) as m:
            t0 = time.perf_counter()
            for _ in range(requests):
                if time.perf_counter() - t0 > LOOP_MAX_S:
                    break
                r0 = time.perf_counter()
                async with session.post(
                    f"{server.url}/tasks", data=body, headers=server.headers
                ) as resp:
                    data = await resp.read()
                    status = resp.status
                latencies.append(time.perf_counter() - r0)
                if status != 201 or len(json.loads(data)["_items"]) != per_request:
                    errors += 1
                    print(f"  bulk POST failed: {status} {data[:300]!r}", file=sys.stderr)
    return Run(
        label,
        len(latencies) * per_request,
        errors,
        m.wall_s,
        latencies,
        m.server_cpu_s,
        m.client_cpu_s,
        m.other_cpu_s,
    )


def single_rows(runs: list[Run]) -> list[list[object]]:
    return [
        [
            r.label,
            r.requests,
            r.errors,
            r.wall_s,
            r.rate,
            measure.percentile(r.latencies, 50) * 1000,
            measure.percentile(r.latencies, 99) * 1000,
            r.server_cpu_s / r.requests * 1000,
            r.client_cpu_s / r.requests * 1000,
            r.server_cpu_s / r.wall_s * 100,
            r.other_cpu_s / r.wall_s * 100,
        ]
        for r in runs
    ]


def filesystem(path: Path) -> str:
    """The mount (type) holding ``path``, from /proc/mounts."""
    best = ("?", "?")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, kind, *_ = line.split()
            if str(path.resolve()).startswith(mount.rstrip("/") + "/") and len(mount) >= len(
                best[0]
            ):
                best = (mount, kind)
    except OSError:
        pass
    return f"{best[1]} mounted on {best[0]}"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where the temporary directory (database) goes; default: the system temp dir",
    )
    printing.add_json_option(parser)
    args = parser.parse_args()
    many = 2_000 if args.quick else 20_000
    one = 300 if args.quick else 2_000
    count_many = 1_000 if args.quick else 5_000
    count_one = 200 if args.quick else 1_000
    bulk_total = 10_000 if args.quick else 100_000

    printing.print_machine("banyan submit benchmark" + (" (--quick)" if args.quick else ""))
    with tempfile.TemporaryDirectory(prefix="banyan-bench-", dir=args.dir) as tmp_name:
        tmp = Path(tmp_name)
        print(f"database directory: {tmp} ({filesystem(tmp)})")
        fsync_before = (
            measure.fsync_latency(tmp, overwrite=False),
            measure.fsync_latency(tmp, overwrite=True),
        )

        # (a) single POSTs
        runs: list[Run] = []
        for sync in ("FULL", "NORMAL"):
            server = servers.start_server(tmp, name=f"single-{sync.lower()}", synchronous=sync)
            try:
                runs.append(
                    await post_load(
                        server,
                        total=many,
                        concurrency=64,
                        label=f"{sync:<6} 64 clients",
                        warmup=WARMUP_REQUESTS,
                    )
                )
                runs.append(
                    await post_load(
                        server, total=one, concurrency=1, label=f"{sync:<6}  1 client", warmup=50
                    )
                )
            finally:
                server.stop()
        print(
            "(a) single POST /tasks, one task each "
            f"(warm-up of {WARMUP_REQUESTS} / 50 requests not counted; latency = client-side, "
            "incl. client event-loop queueing)"
        )
        printing.print_table(
            [
                "sync / load",
                "requests",
                "errors",
                "wall s",
                "tasks/s",
                "p50 ms",
                "p99 ms",
                "srv cpu ms/req",
                "cli cpu ms/req",
                "srv cpu %",
                "other cpu %",
            ],
            single_rows(runs),
        )
        print(
            "cpu % columns: 100 = one CPU busy for the whole wall time; 'other' = every other "
            "process on the machine"
        )
        print()

        # group commit: the same loads, counting committed transactions
        counted: list[list[object]] = []
        for sync in ("FULL", "NORMAL"):
            server = servers.start_server(
                tmp, name=f"count-{sync.lower()}", synchronous=sync, counting=True
            )
            try:
                for conc, total in ((64, count_many), (1, count_one)):
                    await post_load(server, total=50, concurrency=conc, label="warm-up")
                    before = server.counters()
                    run = await post_load(server, total=total, concurrency=conc, label="")
                    after = server.counters()
                    commits = after["batches"] - before["batches"]
                    ops = after["ops"] - before["ops"]
                    counted.append(
                        [
                            f"{sync:<6} {conc:>2} client{'s' if conc > 1 else ''}",
                            run.requests,
                            run.rate,
                            commits,
                            ops / commits if commits else float("nan"),
                            commits / run.wall_s,
                            run.other_cpu_s / run.wall_s * 100,
                        ]
                    )
            finally:
                server.stop()
        print("group commit: write operations per committed transaction (one fsync each at FULL),")
        print("counted by the server's own Database.batches/ops via bench/_counting_server.py")
        printing.print_table(
            [
                "sync / load",
                "requests",
                "tasks/s",
                "commits",
                "ops/commit",
                "commits/s",
                "other cpu %",
            ],
            counted,
        )
        print()

        # (b) bulk POSTs
        server = servers.start_server(tmp, name="bulk", synchronous="FULL")
        try:
            await post_load(server, total=50, concurrency=4, label="warm-up")
            bulk = []
            settle = []
            for per_request, requests in ((bulk_total, 1), (bulk_total // 10, 10)):
                server.wait_idle()
                bulk.append(
                    await bulk_load(
                        server,
                        per_request=per_request,
                        requests=requests,
                        label=f"{requests} x {per_request:,}",
                    )
                )
                cpu0 = server.cpu_seconds()
                waited = server.wait_idle()
                settle.append((waited, server.cpu_seconds() - cpu0))
        finally:
            server.stop()
        print("(b) bulk POST /tasks (a JSON list), synchronous=FULL, requests one after another")
        printing.print_table(
            [
                "requests",
                "tasks",
                "errors",
                "wall s",
                "tasks/s",
                "max req s",
                "srv cpu s",
                "cli cpu s",
                "srv cpu %",
                "other cpu %",
                "busy after s",
                "cpu after s",
            ],
            [
                [
                    b.label,
                    b.requests,
                    b.errors,
                    b.wall_s,
                    b.rate,
                    max(b.latencies),
                    b.server_cpu_s,
                    b.client_cpu_s,
                    b.server_cpu_s / b.wall_s * 100,
                    b.other_cpu_s / b.wall_s * 100,
                    after[0],
                    after[1],
                ]
                for b, after in zip(bulk, settle, strict=True)
            ],
        )
        print(
            "cpu % columns: 100 = one CPU busy for the whole wall time; 'other' = every other "
            "process on the machine; 'busy/cpu after': how long the server kept working after "
            "the last response (e.g. the event hub), not in tasks/s"
        )
        print()
        report = printing.Report("submit", quick=args.quick)
        full_many, full_one = runs[0], runs[1]
        report.add(
            "single POST /tasks, 64 clients, FULL",
            full_many.rate,
            "tasks/s",
            at_least=TARGET_SINGLE,
            note=f"p50 {measure.percentile(full_many.latencies, 50) * 1000:.1f} ms, "
            f"p99 {measure.percentile(full_many.latencies, 99) * 1000:.1f} ms",
        )
        report.add("single POST /tasks, 1 client, FULL", full_one.rate, "tasks/s")
        for b in bulk:
            report.add(
                f"bulk POST /tasks, {b.label}, FULL",
                b.rate,
                "tasks/s",
                at_least=TARGET_BULK,
            )
        report.write(args.json)
        fsync_after = (
            measure.fsync_latency(tmp, overwrite=False),
            measure.fsync_latency(tmp, overwrite=True),
        )
        print(
            "disk: median 4 KiB write+fdatasync in the temp dir, append / overwrite: "
            f"before {fsync_before[0] * 1000:.2f} / {fsync_before[1] * 1000:.2f} ms, "
            f"after {fsync_after[0] * 1000:.2f} / {fsync_after[1] * 1000:.2f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
