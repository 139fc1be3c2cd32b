"""End-to-end throughput and submit->start latency of a real server with real workers.

    .venv/bin/python bench/throughput.py [--quick] [--profile]

(a) Throughput: a ``banyan-server`` (synchronous=FULL) on 127.0.0.1, two local
    workers (``banyan-worker --name bw1|bw2 --cores 2``), then ONE bulk
    ``POST /tasks`` of 1,000 available ``true`` tasks; the clock runs from just
    before the POST until ``GET /tasks?where={"state": {"$ne": "terminated"}}``
    reports ``_meta.total == 0`` (polled every 50 ms, at most 120 s). Two
    variants, each on a fresh server and fresh workers: tasks asking for 0.01
    cores (a 2-core worker may run up to 200 at once, in practice its claim
    limit) and tasks with the default request (1 core: 2 at once per worker).
    Failures = ``where={"execution.exit_status": {"$ne": "success"}}``. The
    servers run through ``bench/_counting_server.py`` (``counting=True``), so
    the run also reports committed write transactions and operations in them
    (group commit), and CPU seconds of the server, the agents, their reaper
    sidecars, the task processes, this process and everything else.
(b) Submit->start latency on idle workers: with both workers connected and
    idle, N times (200; 50 with --quick) POST one available task whose command
    is ``date +%s.%N > <tmp>/<i>.start``; latency = that file's timestamp - the
    client's ``time.time()`` just before the POST; each task is awaited (state
    ``terminated``) and the workers left idle for a moment before the next one.
    The same command run by ``subprocess.run`` here gives the spawn floor
    (sh + date, no Banyan at all).

``--profile`` then repeats (a), both variants, once with bw1 under
``python -m cProfile -m worker.cli`` and once with the server under cProfile
(its event-loop thread, and its SQLite writer and reader threads through a
launcher written into the temp dir), and prints the top 15 functions of each
by cumulative and by own time. Those runs are slower (profiler overhead) and
are not part of the tables.

Server, both workers, their task processes and this load generator share the
same CPUs. Every loop is bounded in count and in time; figures are printed,
never asserted. Only processes started here are stopped (by their Popen).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

try:
    from bench import measure, printing, profiling
except ImportError:  # run as a script: put the repository root (bench/, testbed/) on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import measure, printing, profiling
from bench.e2e_cluster import WORKER_CORES
from bench.throughput_drain import BULK_TASKS, DRAIN_MAX_S, POLL_S, throughput
from bench.throughput_latency import latency, spawn_floor

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATE = 1_600
TARGET_P50_MS = 10
TARGET_P99_MS = 50


# --- profile -------------------------------------------------------------------------


PROFILED_RUNS = (("cores 0.01", "prof-small", 0.01), ("cores 1 (default)", "prof-default", None))


async def profiles(tmp: Path) -> None:
    print("== profiles: extra runs of (a), slower than the measured ones (profiler overhead)")
    for label, name, cores in PROFILED_RUNS:
        for who in ("bw1", "server"):
            run_name = f"{name}-{who}"
            run = await throughput(
                tmp,
                label,
                run_name,
                cores,
                profile_bw1=who == "bw1",
                profile_server=who == "server",
            )
            print(
                f"-- {label}, {who} under cProfile: {run.done:,} tasks in {run.wall_s:.2f} s "
                f"= {run.rate:.0f} tasks/s, {run.failures} failures; cpu s: server "
                f"{run.server_cpu_s:.2f}, workers {run.worker_cpu_s:.2f}, "
                f"task procs {run.task_cpu_s:.2f}"
            )
            print()
            if who == "bw1":
                profiling.print_profile(
                    tmp / f"{run_name}-bw1.prof", f"{label}: bw1 (worker) main thread"
                )
                continue
            base = tmp / f"{run_name}-server.prof"
            for suffix, thread in (
                ("main", "event-loop"),
                ("write", "SQLite writer"),
                ("read", "SQLite reader"),
            ):
                profiling.print_profile(
                    Path(f"{base}.{suffix}"), f"{label}: server {thread} thread"
                )


# --- main ----------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="50 latency samples instead of 200")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile bw1 and the server in extra runs of (a)",
    )
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary directory")
    printing.add_json_option(parser)
    args = parser.parse_args()
    n_latency = 50 if args.quick else 200
    report = printing.Report("throughput", quick=args.quick)

    printing.print_machine(
        "banyan end-to-end throughput / latency" + (" (--quick)" if args.quick else "")
    )
    print(
        f"note: the server, the 2 workers (bw1, bw2: --cores {WORKER_CORES} each, so 4 'cores' "
        f"offered), their task processes and this load generator all share the same "
        f"{printing.cpu_count()} CPU(s)"
    )
    print()
    with tempfile.TemporaryDirectory(prefix="banyan-tp-", dir=args.dir) as tmp_name:
        tmp = Path(tmp_name)
        fsync_append = measure.fsync_latency(tmp, overwrite=False) * 1000
        fsync_overwrite = measure.fsync_latency(tmp, overwrite=True) * 1000
        print(
            f"disk: 4 KiB write + fdatasync in {tmp}: median {fsync_append:.2f} ms appending, "
            f"{fsync_overwrite:.2f} ms overwriting (the least one commit at FULL costs)"
        )
        print()
        runs = [
            await throughput(tmp, "cores 0.01", "tp-small", 0.01),
            await throughput(tmp, "cores 1 (default)", "tp-default", None),
        ]
        print(
            f"(a) one bulk POST of {BULK_TASKS:,} `true` tasks, 2 workers, synchronous=FULL; "
            f"wall = before the POST until none is left un-terminated (polled every "
            f"{POLL_S * 1000:.0f} ms, so +-{POLL_S * 1000:.0f} ms)"
        )
        printing.print_table(
            [
                "request",
                "tasks",
                "done",
                "failures",
                "POST s",
                "wall s",
                "tasks/s",
                "peak running",
                "commits",
                "write ops",
                "ops/commit",
                "commits/task",
            ],
            [
                [
                    r.label,
                    r.tasks,
                    r.done,
                    r.failures,
                    r.post_s,
                    r.wall_s,
                    r.rate,
                    r.peak_running,
                    int(r.commits),
                    int(r.write_ops),
                    r.write_ops / r.commits,
                    r.commits / r.done,
                ]
                for r in runs
            ],
        )
        print()
        ncpu = printing.cpu_count()
        printing.print_table(
            [
                "request",
                "srv cpu s",
                "workers cpu s",
                "reapers cpu s",
                "task procs cpu s",
                "client cpu s",
                "ours ms/task",
                "other procs cpu s",
                "machine cpu %",
                "cpu-bound ceiling tasks/s",
            ],
            [
                [
                    r.label,
                    r.server_cpu_s,
                    r.worker_cpu_s,
                    r.sidecar_cpu_s,
                    r.task_cpu_s,
                    r.client_cpu_s,
                    r.ours_cpu_s / r.done * 1000 if r.done else float("nan"),
                    r.other_cpu_s,
                    r.machine_cpu_s / r.wall_s / ncpu * 100,
                    r.done * ncpu / r.ours_cpu_s if r.ours_cpu_s else float("nan"),
                ]
                for r in runs
            ],
        )
        for r in runs:
            if r.timed_out:
                print(
                    f"  {r.label}: stopped after {DRAIN_MAX_S:.0f} s with {r.tasks - r.done} left"
                )
        print(
            "'peak running' = most tasks seen in state running at one poll; 'commits' = write "
            "transactions the server committed during the run (each one fsync at FULL), "
            "'write ops' = operations in them (claims, finish reports, the bulk create, ...); "
            "cpu: 'workers' = both agent processes, 'reapers' = their reaper sidecars, 'task "
            "procs' = the sh/true children they reaped, 'ours' = server + workers + reapers + "
            "task procs + client, 'other procs' = the rest of the machine "
            "(not this benchmark), 'machine cpu %' = 100 when every CPU is busy for the whole "
            "wall time, 'cpu-bound ceiling' = nproc / ours-per-task: the rate if our CPU per "
            "task stayed the same and every CPU were ours and busy"
        )
        print()

        lat = await latency(tmp, "lat", n_latency)
        floor = spawn_floor(tmp, n_latency)
        ms = [s * 1000 for s in lat.samples]
        rtt = [s * 1000 for s in lat.post_rtt]
        fl = [s * 1000 for s in floor]
        print(
            f"(b) submit->start latency, idle workers, {len(ms)} samples (+3 warm-up), "
            f"{lat.lost} lost; start = `date +%s.%N` written by the task"
        )
        printing.print_table(
            ["measure", "n", "p50 ms", "p99 ms", "max ms", "mean ms"],
            [
                [
                    "POST -> task started",
                    len(ms),
                    measure.percentile(ms, 50),
                    measure.percentile(ms, 99),
                    max(ms, default=float("nan")),
                    statistics.fmean(ms) if ms else float("nan"),
                ],
                [
                    "  of which POST round trip",
                    len(rtt),
                    measure.percentile(rtt, 50),
                    measure.percentile(rtt, 99),
                    max(rtt, default=float("nan")),
                    statistics.fmean(rtt) if rtt else float("nan"),
                ],
                [
                    "spawn floor (subprocess.run)",
                    len(fl),
                    measure.percentile(fl, 50),
                    measure.percentile(fl, 99),
                    max(fl, default=float("nan")),
                    statistics.fmean(fl) if fl else float("nan"),
                ],
            ],
        )
        print()

        print("summary vs targets (context only, not assertions)")
        printing.print_table(
            ["figure", "measured", "target"],
            [
                [f"tasks/s, {runs[0].label}", runs[0].rate, f">= {TARGET_RATE:,}"],
                [f"tasks/s, {runs[1].label}", runs[1].rate, f">= {TARGET_RATE:,}"],
                ["submit->start p50 ms", measure.percentile(ms, 50), f"<= {TARGET_P50_MS}"],
                ["submit->start p99 ms", measure.percentile(ms, 99), f"<= {TARGET_P99_MS}"],
            ],
        )
        print()
        report.add(
            f"shell tasks e2e, 2 workers, {runs[0].label}",
            runs[0].rate,
            "tasks/s",
            at_least=TARGET_RATE,
        )
        report.add(f"shell tasks e2e, 2 workers, {runs[1].label}", runs[1].rate, "tasks/s")
        report.add(
            "submit->start p50, idle worker",
            measure.percentile(ms, 50),
            "ms",
            at_most=TARGET_P50_MS,
        )
        report.add(
            "submit->start p99, idle worker",
            measure.percentile(ms, 99),
            "ms",
            at_most=TARGET_P99_MS,
        )
        report.write(args.json)

        if args.profile:
            await profiles(tmp)


if __name__ == "__main__":
    asyncio.run(main())
