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
import contextlib
import io
import json
import os
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

try:
    from bench import common
except ImportError:  # run as a script: bench/ is on sys.path
    import common  # type: ignore[no-redef,import-not-found]

ROOT = Path(__file__).resolve().parents[1]
BULK_TASKS = 1_000
POLL_S = 0.05
DRAIN_MAX_S = 120.0  # the throughput wait stops by itself after this long
LATENCY_TASK_MAX_S = 10.0  # one latency sample gives up after this long
LATENCY_LOOP_MAX_S = 180.0  # the whole latency loop stops after this long
IDLE_SETTLE_S = 0.05  # after a latency task ends, let the worker's re-claim round trip finish
WORKERS = ("bw1", "bw2")
WORKER_CORES = "2"
TARGET_RATE = 1_600
TARGET_P50_MS = 10
TARGET_P99_MS = 50

NOT_TERMINATED = json.dumps({"state": {"$ne": "terminated"}})
RUNNING = json.dumps({"state": "running"})
FAILED = json.dumps({"execution.exit_status": {"$ne": "success"}})


# --- processes -----------------------------------------------------------------------


def proc_cpu(pid: int) -> tuple[float, float]:
    """(own user+sys, reaped children's user+sys) CPU seconds of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / common.CLK_TCK
    children = (int(fields[13]) + int(fields[14])) / common.CLK_TCK
    return own, children


def child_pids(pid: int) -> list[int]:
    """Live children of ``pid`` (a scan of /proc: no /proc/PID/task/*/children here)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            found.append(int(entry.name))
    return found


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    profile: Path | None = None
    sidecars: list[int] = field(default_factory=list)  # its reaper, found once it is idle
    _log_handle: Any = field(default=None, repr=False)

    def find_sidecars(self) -> None:
        """While idle, the worker's only live child is its reaper sidecar."""
        self.sidecars = child_pids(self.proc.pid)

    def cpu(self) -> tuple[float, float, float]:
        """(agent, reaped task processes, sidecars) CPU seconds so far."""
        try:
            own, children = proc_cpu(self.proc.pid)
        except OSError:
            return float("nan"), float("nan"), float("nan")
        side = 0.0
        for pid in self.sidecars:
            with contextlib.suppress(OSError):
                side += proc_cpu(pid)[0]
        return own, children, side

    def stop(self) -> int | None:
        """SIGTERM (the worker leaves cleanly; a profiled one writes its profile),
        wait up to 15 s, then SIGKILL."""
        code = common.stop_process(self.proc, self._log_handle, grace_s=15)
        self._log_handle = None
        return code


def worker_command(name: str, profile: Path | None) -> list[str]:
    args = ["--name", name, "--cores", WORKER_CORES]
    if profile is None:
        script = Path(sys.executable).parent / "banyan-worker"
        if script.exists():
            return [str(script), *args]
        return [sys.executable, "-m", "worker.cli", *args]
    return [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "worker.cli", *args]


def start_worker(tmp: Path, server_name: str, name: str, profile: Path | None = None) -> Worker:
    """``banyan-worker --name NAME --cores 2`` finding the server through the
    client file ``common.start_server(tmp, name=server_name)`` wrote."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANYAN_")}
    env["BANYAN_CLIENT_FILE"] = str(tmp / f"{server_name}-client.json")
    env["BANYAN_CONFIG"] = str(tmp / "empty-config.toml")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    log = tmp / f"{server_name}-{name}-worker.log"
    handle = open(log, "wb")  # noqa: SIM115 - closed by Worker.stop
    proc = subprocess.Popen(
        worker_command(name, profile), stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=tmp
    )
    return Worker(name, proc, log, profile, _log_handle=handle)


async def wait_idle(
    http: aiohttp.ClientSession,
    server: common.Server,
    workers: list[Worker],
    timeout_s: float = 30.0,
) -> None:
    """Until every worker is connected with nothing running (``GET /workers``)."""
    names = {w.name for w in workers}
    deadline = time.monotonic() + timeout_s
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        for w in workers:
            if w.proc.poll() is not None:
                raise RuntimeError(f"worker {w.name} exited: {w.log.read_text()[-2000:]}")
        async with http.get(f"{server.url}/workers", headers=server.headers) as resp:
            data = await resp.json()
        states = {w["name"]: w["state"] for w in data["_items"]}
        if all(states.get(n) == "idle" for n in names):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"workers not idle within {timeout_s} s: {states}")


# ``server.cli.main`` under cProfile: one profile for the event-loop thread, one
# for the SQLite writer thread (every group-commit batch runs there, inside
# ``_apply_batch``) and one for the reader thread (``_in_read_transaction``);
# a cProfile.Profile must not be enabled in two threads at once. The files are
# written when the server exits on SIGTERM.
PROFILED_SERVER = """\
import cProfile, sys
import server.stores.sqlite.db as db
from server.cli import main

OUT = sys.argv.pop(1)
write_prof = cProfile.Profile()
read_prof = cProfile.Profile()

def _wrap(fn, prof):
    def wrapped(*args, **kwargs):
        prof.enable()
        try:
            return fn(*args, **kwargs)
        finally:
            prof.disable()
    return wrapped

db._apply_batch = _wrap(db._apply_batch, write_prof)
db._in_read_transaction = _wrap(db._in_read_transaction, read_prof)
main_prof = cProfile.Profile()
main_prof.enable()
try:
    code = main()
finally:
    main_prof.disable()
    main_prof.dump_stats(OUT + ".main")
    write_prof.dump_stats(OUT + ".write")
    read_prof.dump_stats(OUT + ".read")
sys.exit(code)
"""


def start_profiled_server(tmp: Path, name: str) -> common.Server:
    """``common.start_server`` with the command swapped for the profiling launcher."""
    launcher = tmp / "profiled_server.py"
    launcher.write_text(PROFILED_SERVER)
    out = tmp / f"{name}-server.prof"
    original = common.server_command
    common.server_command = lambda: [sys.executable, str(launcher), str(out)]
    try:
        return common.start_server(tmp, name=name, synchronous="FULL")
    finally:
        common.server_command = original


class Cluster:
    """A fresh server (synchronous FULL) + the two workers, stopped on exit."""

    def __init__(
        self, tmp: Path, name: str, profile_bw1: bool = False, profile_server: bool = False
    ) -> None:
        self.tmp, self.name, self.profile_bw1, self.profile_server = (
            tmp,
            name,
            profile_bw1,
            profile_server,
        )
        self.server: common.Server | None = None
        self.workers: list[Worker] = []

    def __enter__(self) -> Cluster:
        try:
            if self.profile_server:
                self.server = start_profiled_server(self.tmp, self.name)
            else:  # counting: the group-commit counters, read by SIGUSR1 (no other change)
                self.server = common.start_server(
                    self.tmp, name=self.name, synchronous="FULL", counting=True
                )
            for w in WORKERS:
                prof = (
                    self.tmp / f"{self.name}-{w}.prof" if self.profile_bw1 and w == "bw1" else None
                )
                self.workers.append(start_worker(self.tmp, self.name, w, prof))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for w in self.workers:
            w.stop()
        if self.server is not None:
            self.server.stop()


async def count(http: aiohttp.ClientSession, server: common.Server, where: str) -> int:
    params = {"where": where, "max_results": "1"}
    async with http.get(f"{server.url}/tasks", params=params, headers=server.headers) as resp:
        data = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"GET /tasks {resp.status}: {data}")
    return int(data["_meta"]["total"])


# --- (a) throughput ------------------------------------------------------------------


@dataclass
class Throughput:
    label: str
    tasks: int
    done: int
    failures: int
    post_s: float
    wall_s: float
    timed_out: bool
    peak_running: int
    server_cpu_s: float
    worker_cpu_s: float
    task_cpu_s: float
    client_cpu_s: float
    machine_cpu_s: float
    sidecar_cpu_s: float
    commits: float  # committed write transactions during the run (nan: not counted)
    write_ops: float  # write operations in them

    @property
    def rate(self) -> float:
        return self.done / self.wall_s if self.wall_s else float("nan")

    @property
    def ours_cpu_s(self) -> float:
        """Server + workers + their tasks + this load generator."""
        return (
            self.server_cpu_s
            + self.worker_cpu_s
            + self.task_cpu_s
            + self.client_cpu_s
            + self.sidecar_cpu_s
        )

    @property
    def other_cpu_s(self) -> float:
        """Every other process on the machine over the same wall time."""
        return max(0.0, self.machine_cpu_s - self.ours_cpu_s)


async def throughput(
    tmp: Path,
    label: str,
    name: str,
    cores: float | None,
    *,
    profile_bw1: bool = False,
    profile_server: bool = False,
) -> Throughput:
    task: dict[str, Any] = {"command": "true", "state": "available"}
    if cores is not None:
        task["requested_resources"] = {"cores": cores}
    body = json.dumps([task] * BULK_TASKS).encode()
    timeout = aiohttp.ClientTimeout(total=60)
    with Cluster(tmp, name, profile_bw1=profile_bw1, profile_server=profile_server) as cluster:
        server = cluster.server
        assert server is not None
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await wait_idle(http, server, cluster.workers)
            for w in cluster.workers:
                w.find_sidecars()
            counted = server.counters_file is not None
            k0 = server.counters() if counted else {}
            cpu0 = [w.cpu() for w in cluster.workers]
            s0, c0, b0 = (
                server.cpu_seconds(),
                common.client_cpu_seconds(),
                common.busy_cpu_seconds(),
            )
            t0 = time.perf_counter()
            async with http.post(f"{server.url}/tasks", data=body, headers=server.headers) as resp:
                created = await resp.json()
                status = resp.status
            post_s = time.perf_counter() - t0
            if status != 201 or len(created.get("_items", [])) != BULK_TASKS:
                raise RuntimeError(f"bulk POST failed: {status} {str(created)[:300]}")
            remaining, peak = BULK_TASKS, 0
            deadline = t0 + DRAIN_MAX_S
            tick = t0
            while time.perf_counter() < deadline:
                tick += POLL_S
                await asyncio.sleep(max(0.0, tick - time.perf_counter()))
                remaining = await count(http, server, NOT_TERMINATED)
                if remaining == 0:
                    break
                peak = max(peak, await count(http, server, RUNNING))
            wall = time.perf_counter() - t0
            server_cpu = server.cpu_seconds() - s0
            client_cpu = common.client_cpu_seconds() - c0
            machine_cpu = common.busy_cpu_seconds() - b0
            cpu1 = [w.cpu() for w in cluster.workers]
            k1 = server.counters() if counted else {}
            failures = await count(http, server, FAILED)
    nan = float("nan")
    return Throughput(
        label=label,
        tasks=BULK_TASKS,
        done=BULK_TASKS - remaining,
        failures=failures,
        post_s=post_s,
        wall_s=wall,
        timed_out=remaining != 0,
        peak_running=peak,
        server_cpu_s=server_cpu,
        worker_cpu_s=sum(b[0] - a[0] for a, b in zip(cpu0, cpu1, strict=True)),
        task_cpu_s=sum(b[1] - a[1] for a, b in zip(cpu0, cpu1, strict=True)),
        client_cpu_s=client_cpu,
        machine_cpu_s=machine_cpu,
        sidecar_cpu_s=sum(b[2] - a[2] for a, b in zip(cpu0, cpu1, strict=True)),
        commits=k1["batches"] - k0["batches"] if counted else nan,
        write_ops=k1["ops"] - k0["ops"] if counted else nan,
    )


# --- (b) latency ---------------------------------------------------------------------


@dataclass
class Latency:
    samples: list[float]  # seconds, file timestamp - client time before the POST
    post_rtt: list[float]  # seconds, the POST's round trip
    lost: int  # samples that did not start or end within LATENCY_TASK_MAX_S


async def latency(tmp: Path, name: str, n: int) -> Latency:
    out = tmp / f"{name}-starts"
    out.mkdir()
    samples: list[float] = []
    rtts: list[float] = []
    lost = 0
    timeout = aiohttp.ClientTimeout(total=30)
    with Cluster(tmp, name) as cluster:
        server = cluster.server
        assert server is not None
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await wait_idle(http, server, cluster.workers)
            loop_deadline = time.monotonic() + LATENCY_LOOP_MAX_S
            for i in range(n + 3):  # the first 3 warm the path up and are not counted
                if time.monotonic() > loop_deadline:
                    print(
                        f"  latency loop stopped after {LATENCY_LOOP_MAX_S:.0f} s", file=sys.stderr
                    )
                    break
                path = out / f"{i}.start"
                body = json.dumps(
                    {"command": f"date +%s.%N > {path}", "state": "available"}
                ).encode()
                t_wall = time.time()
                r0 = time.perf_counter()
                async with http.post(
                    f"{server.url}/tasks", data=body, headers=server.headers
                ) as resp:
                    created = await resp.json()
                rtt = time.perf_counter() - r0
                task_url = f"{server.url}/tasks/{created['_id']}"
                deadline = time.monotonic() + LATENCY_TASK_MAX_S
                state = ""
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                    async with http.get(task_url, headers=server.headers) as resp:
                        state = (await resp.json())["state"]
                    if state == "terminated":
                        break
                try:
                    started = float(path.read_text().strip())
                except (OSError, ValueError):
                    started = None
                if state != "terminated" or started is None:
                    lost += 1
                elif i >= 3:
                    samples.append(started - t_wall)
                    rtts.append(rtt)
                await asyncio.sleep(IDLE_SETTLE_S)
    return Latency(samples, rtts, lost)


def spawn_floor(tmp: Path, n: int) -> list[float]:
    """The same ``sh -c 'date +%s.%N > FILE'`` from ``subprocess.run``: file
    timestamp - time just before the spawn."""
    out = tmp / "floor"
    out.mkdir()
    times: list[float] = []
    deadline = time.monotonic() + 30
    for i in range(n):
        if time.monotonic() > deadline:
            break
        path = out / f"{i}.start"
        t = time.time()
        command = ["/bin/sh", "-c", f"date +%s.%N > {path}"]
        subprocess.run(command, check=False, stdin=subprocess.DEVNULL, capture_output=True)
        times.append(float(path.read_text().strip()) - t)
    return times


# --- profile -------------------------------------------------------------------------


_PATH_NOISE = re.compile(r"\S*/(?:site-packages|python3\.\d+)/|" + re.escape(str(ROOT)) + "/")
PROJECT_CODE = r"/(?:worker|server|banyan)/"  # pstats restriction: the project's own functions


def print_profile(path: Path, title: str, top: int = 15) -> None:
    """Top ``top`` by cumulative time among the project's functions (the whole
    list starts with runpy/asyncio frames that say nothing), then top ``top``
    by own time among all functions."""
    if not path.exists():
        print(f"  (no profile written at {path})")
        return
    for key, restriction, scope in (
        ("cumulative", PROJECT_CODE, "project code"),
        ("tottime", None, "all functions"),
    ):
        buf = io.StringIO()
        stats = pstats.Stats(str(path), stream=buf).sort_stats(key)
        if restriction:
            stats.print_stats(restriction, top)
        else:
            stats.print_stats(top)
        text = buf.getvalue()
        start = text.find("   ncalls")
        head = [ln for ln in text[:start].splitlines() if "function calls" in ln]
        print(f"-- {title}, top {top} by {key} ({scope}); {head[0].strip() if head else ''}")
        print(_PATH_NOISE.sub("", text[start:].rstrip()))
        print()


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
                print_profile(tmp / f"{run_name}-bw1.prof", f"{label}: bw1 (worker) main thread")
                continue
            base = tmp / f"{run_name}-server.prof"
            for suffix, thread in (
                ("main", "event-loop"),
                ("write", "SQLite writer"),
                ("read", "SQLite reader"),
            ):
                print_profile(Path(f"{base}.{suffix}"), f"{label}: server {thread} thread")


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
    common.add_json_option(parser)
    args = parser.parse_args()
    n_latency = 50 if args.quick else 200
    report = common.Report("throughput", quick=args.quick)

    common.print_machine(
        "banyan end-to-end throughput / latency" + (" (--quick)" if args.quick else "")
    )
    print(
        f"note: the server, the 2 workers (bw1, bw2: --cores {WORKER_CORES} each, so 4 'cores' "
        f"offered), their task processes and this load generator all share the same "
        f"{common.cpu_count()} CPU(s)"
    )
    print()
    with tempfile.TemporaryDirectory(prefix="banyan-tp-", dir=args.dir) as tmp_name:
        tmp = Path(tmp_name)
        fsync_append = common.fsync_latency(tmp, overwrite=False) * 1000
        fsync_overwrite = common.fsync_latency(tmp, overwrite=True) * 1000
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
        common.print_table(
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
        ncpu = common.cpu_count()
        common.print_table(
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
        common.print_table(
            ["measure", "n", "p50 ms", "p99 ms", "max ms", "mean ms"],
            [
                [
                    "POST -> task started",
                    len(ms),
                    common.percentile(ms, 50),
                    common.percentile(ms, 99),
                    max(ms, default=float("nan")),
                    statistics.fmean(ms) if ms else float("nan"),
                ],
                [
                    "  of which POST round trip",
                    len(rtt),
                    common.percentile(rtt, 50),
                    common.percentile(rtt, 99),
                    max(rtt, default=float("nan")),
                    statistics.fmean(rtt) if rtt else float("nan"),
                ],
                [
                    "spawn floor (subprocess.run)",
                    len(fl),
                    common.percentile(fl, 50),
                    common.percentile(fl, 99),
                    max(fl, default=float("nan")),
                    statistics.fmean(fl) if fl else float("nan"),
                ],
            ],
        )
        print()

        print("summary vs targets (context only, not assertions)")
        common.print_table(
            ["figure", "measured", "target"],
            [
                [f"tasks/s, {runs[0].label}", runs[0].rate, f">= {TARGET_RATE:,}"],
                [f"tasks/s, {runs[1].label}", runs[1].rate, f">= {TARGET_RATE:,}"],
                ["submit->start p50 ms", common.percentile(ms, 50), f"<= {TARGET_P50_MS}"],
                ["submit->start p99 ms", common.percentile(ms, 99), f"<= {TARGET_P99_MS}"],
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
            "submit->start p50, idle worker", common.percentile(ms, 50), "ms", at_most=TARGET_P50_MS
        )
        report.add(
            "submit->start p99, idle worker", common.percentile(ms, 99), "ms", at_most=TARGET_P99_MS
        )
        report.write(args.json)

        if args.profile:
            await profiles(tmp)


if __name__ == "__main__":
    asyncio.run(main())
