"""The peer race: Banyan's default path against huey and HyperQueue, rep by rep.

    .venv/bin/python bench/peers.py [--quick] [--reps R] [--tasks N] [--large]
        [--json PATH]

Each rep runs every contender once, in an order that rotates from rep to rep
(so no contender always goes first on a cold or warm machine), each on fresh
state in a temp dir, 127.0.0.1 only:

- ``banyan``: a ``banyan-server`` (default settings: synchronous=FULL) and two
  ``banyan-worker --cores 1``; one bulk ``POST /tasks`` of N available
  ``true`` tasks with the default request (1 core); the clock runs from just
  before the POST until every task is terminated (polled every 10 ms).
- ``banyan-0.01``: the same with ``requested_resources.cores = 0.01``.
- ``banyan-p0``: ``banyan`` with ``banyan-worker --prefetch 0`` (no queued
  attempts: one claim round trip per task on the critical path).
- ``huey``: ``SqliteHuey(fsync=True)`` (durable) and ``huey_consumer -k
  process -w 2``; N tasks that each run ``subprocess.run("true",
  shell=True)``, enqueued from one client; the clock runs from the first
  enqueue until huey has stored N results.
- ``hq``: HyperQueue (the ``hyperqueue`` wheel embeds the server and the
  worker), two workers of 1 cpu each, one job of N tasks ``sh -c ': > STAMP'``
  (1 cpu each); the clock runs from the submit to the newest stamp's mtime
  (``hq``'s own wait returns on one-second ticks).
- ``spawn``: the floor, 2 processes each running ``subprocess.run(["true"])``
  N/2 times.
- ``banyan-post64`` against ``huey-enqueue`` (the submit figure): N single
  ``POST /tasks`` (inactive ``true``) from 64 concurrent client loops, against
  N ``huey`` enqueues from one client (each its own durable transaction),
  with no worker or consumer running.

``--baseline DIR`` adds ``base`` and ``base-0.01``: the same two Banyan runs
with the server and workers imported from another checkout ``DIR`` (its
``PYTHONPATH``; the console scripts are this venv's), so a change is raced
against the code before it, rep by rep (ratios banyan/base, banyan-0.01/base-0.01).

The peers are installed on first use into ``bench/.peers-venv`` (``pip install
huey hyperqueue``). Prints per contender the median rate and range, and per
rep the ratios banyan/huey, banyan/hq, banyan-0.01/spawn, banyan/banyan-p0 and
banyan-post64/huey-enqueue, with their medians. N defaults to 1,000
(``--large``: 10,000); every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    from bench import printing
except ImportError:  # run as a script: put the repository root (bench/, testbed/) on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import printing

import aiohttp

from testbed import Cluster

HERE = Path(__file__).resolve().parent
PEERS_VENV = HERE / ".peers-venv"
PEERS_PY = PEERS_VENV / "bin" / "python"
RUN_MAX_S = 300.0  # one contender's run gives up after this long
POLL_S = 0.01

HUEY_CHILD = textwrap.dedent(
    """
    import json, subprocess, sys, time
    from pathlib import Path
    from huey import SqliteHuey
    tmp, n = Path(sys.argv[1]), int(sys.argv[2])
    huey = SqliteHuey(filename=str(tmp / "huey.db"), fsync=True)

    @huey.task()
    def run(i):
        subprocess.run("true", shell=True, check=False)
        return i

    if __name__ == "__main__":
        if sys.argv[3] == "enqueue":  # the submit figure: enqueue only, one client
            t0 = time.perf_counter()
            for i in range(n):
                run(i)
            print(json.dumps({"wall_s": time.perf_counter() - t0, "done": n}))
        elif sys.argv[3] == "consumer":
            from huey.consumer import Consumer
            Consumer(
                huey, workers=2, worker_type="process", periodic=False,
                initial_delay=0.01, max_delay=0.1,
            ).run()
        else:
            t0 = time.perf_counter()
            for i in range(n):
                run(i)
            deadline = t0 + float(sys.argv[4])
            while huey.result_count() < n and time.perf_counter() < deadline:
                time.sleep(0.005)
            print(json.dumps({"wall_s": time.perf_counter() - t0, "done": huey.result_count()}))
    """
)

HQ_CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from hyperqueue import Job, LocalCluster
    from hyperqueue.cluster import WorkerConfig
    tmp, n, max_s = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    stamps = tmp / "stamps"
    stamps.mkdir()
    with LocalCluster(server_dir=str(tmp / "hq")) as cluster:
        cluster.start_worker(WorkerConfig(cores=1))
        cluster.start_worker(WorkerConfig(cores=1))
        client = cluster.client()
        job = Job()
        for i in range(n):
            job.program(["sh", "-c", f": > {stamps}/{i}"], stdout=None, stderr=None)
        time.sleep(1.0)  # both workers registered
        t0 = time.time()
        client.submit(job)
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            names = os.listdir(stamps)
            if len(names) >= n:
                break
            time.sleep(0.01)
        names = os.listdir(stamps)
        end = max((os.stat(stamps / m).st_mtime for m in names), default=t0)
        print(json.dumps({"wall_s": end - t0, "done": len(names)}))
    """
)

SPAWN_CHILD = textwrap.dedent(
    """
    import subprocess, sys
    for _ in range(int(sys.argv[1])):
        subprocess.run(["true"], check=False)
    """
)


def ensure_peers() -> None:
    """Install huey and hyperqueue into their own virtualenv on first use."""
    if PEERS_PY.exists():
        done = subprocess.run(
            [str(PEERS_PY), "-c", "import huey, hyperqueue"], capture_output=True, check=False
        )
        if done.returncode == 0:
            return
    subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True, timeout=120)
    subprocess.run(
        [str(PEERS_PY), "-m", "pip", "install", "-q", "huey", "hyperqueue"],
        check=True,
        timeout=600,
    )


@contextlib.contextmanager
def imported_from(checkout: Path | None) -> Iterator[None]:
    """Processes started meanwhile import Banyan from ``checkout`` (None: this one)."""
    if checkout is None:
        yield
        return
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(checkout)
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def run_banyan(
    tmp: Path,
    n: int,
    cores: float | None,
    worker_args: tuple[str, ...] = (),
    checkout: Path | None = None,
) -> tuple[float, int]:
    with imported_from(checkout):
        return _run_banyan(tmp, n, cores, worker_args)


def _run_banyan(
    tmp: Path, n: int, cores: float | None, worker_args: tuple[str, ...]
) -> tuple[float, int]:
    task: dict[str, object] = {"command": "true", "state": "available"}
    if cores is not None:
        task["requested_resources"] = {"cores": cores}
    with Cluster(tmp, name="race", settings={}) as cluster:
        cluster.start_server()
        cluster.start_worker("r1", *worker_args, cores=1, memory=None)
        cluster.start_worker("r2", *worker_args, cores=1, memory=None)
        cluster.wait_connected("r1", "r2", states=("idle",))
        http = cluster.http
        t0 = time.perf_counter()
        http.submit([task] * n)
        remaining = n
        while time.perf_counter() - t0 < RUN_MAX_S:
            remaining = http.count({"state": {"$ne": "terminated"}})
            if remaining == 0:
                break
            time.sleep(POLL_S)
        wall = time.perf_counter() - t0
        cluster.close(grace_s=5)
    return wall, n - remaining


def run_huey(tmp: Path, n: int) -> tuple[float, int]:
    script = tmp / "hueyrace.py"
    script.write_text(HUEY_CHILD)
    consumer = subprocess.Popen(
        [str(PEERS_PY), str(script), str(tmp), str(n), "consumer"],
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(1.0)  # the consumer's two worker processes are up
        done = subprocess.run(
            [str(PEERS_PY), str(script), str(tmp), str(n), "client", str(RUN_MAX_S)],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=RUN_MAX_S + 30,
            check=True,
        )
    finally:
        consumer.terminate()
        try:
            consumer.wait(timeout=10)
        except subprocess.TimeoutExpired:
            consumer.kill()
            consumer.wait()
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return float(out["wall_s"]), int(out["done"])


def run_huey_enqueue(tmp: Path, n: int) -> tuple[float, int]:
    script = tmp / "hueyrace.py"
    script.write_text(HUEY_CHILD)
    done = subprocess.run(
        [str(PEERS_PY), str(script), str(tmp), str(n), "enqueue"],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=RUN_MAX_S,
        check=True,
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return float(out["wall_s"]), int(out["done"])


def run_banyan_posts(tmp: Path, n: int, clients: int = 64) -> tuple[float, int]:
    """n single ``POST /tasks`` (one inactive task each) from ``clients`` loops."""

    async def go(url: str, headers: dict[str, str]) -> tuple[float, int]:
        body = json.dumps({"command": "true"})
        left = [n]
        ok = [0]
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

            async def loop() -> None:
                while left[0] > 0:
                    left[0] -= 1
                    async with http.post(f"{url}/tasks", data=body) as resp:
                        await resp.read()
                        ok[0] += resp.status == 201

            t0 = time.perf_counter()
            await asyncio.gather(*(loop() for _ in range(clients)))
            return time.perf_counter() - t0, ok[0]

    with Cluster(tmp, name="posts", settings={}) as cluster:
        cluster.start_server()
        server = cluster.server
        return asyncio.run(asyncio.wait_for(go(server.url, server.headers), RUN_MAX_S))


def run_hq(tmp: Path, n: int) -> tuple[float, int]:
    script = tmp / "hqrace.py"
    script.write_text(HQ_CHILD)
    done = subprocess.run(
        [str(PEERS_PY), str(script), str(tmp), str(n), str(RUN_MAX_S)],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=RUN_MAX_S + 60,
        check=True,
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return float(out["wall_s"]), int(out["done"])


def run_spawn(tmp: Path, n: int) -> tuple[float, int]:
    script = tmp / "spawnfloor.py"
    script.write_text(SPAWN_CHILD)
    half = n // 2
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, str(script), str(half)]) for _ in range(2)]
    for proc in procs:
        proc.wait(timeout=RUN_MAX_S)
    return time.perf_counter() - t0, 2 * half


def contenders(
    n: int, baseline: Path | None = None
) -> dict[str, Callable[[Path], tuple[float, int]]]:
    runs: dict[str, Callable[[Path], tuple[float, int]]] = {
        "banyan": lambda tmp: run_banyan(tmp, n, None),
        "huey": lambda tmp: run_huey(tmp, n),
        "hq": lambda tmp: run_hq(tmp, n),
        "banyan-0.01": lambda tmp: run_banyan(tmp, n, 0.01),
        # The same without prefetch (--prefetch 0): the before of issue 12's queue.
        "banyan-p0": lambda tmp: run_banyan(tmp, n, None, ("--prefetch", "0")),
        "spawn": lambda tmp: run_spawn(tmp, n),
        "banyan-post64": lambda tmp: run_banyan_posts(tmp, n),
        "huey-enqueue": lambda tmp: run_huey_enqueue(tmp, n),
    }
    if baseline is not None:
        runs["base"] = lambda tmp: run_banyan(tmp, n, None, checkout=baseline)
        runs["base-0.01"] = lambda tmp: run_banyan(tmp, n, 0.01, checkout=baseline)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 reps of 300 tasks")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=None, help="N (default 1,000)")
    parser.add_argument("--large", action="store_true", help="N = 10,000")
    parser.add_argument("--only", default=None, help="comma-separated contenders")
    parser.add_argument(
        "--baseline", type=Path, default=None, help="another checkout raced as base, base-0.01"
    )
    printing.add_json_option(parser)
    args = parser.parse_args()
    n = args.tasks or (10_000 if args.large else 300 if args.quick else 1_000)
    reps = max(1, args.reps)
    ensure_peers()
    runs = contenders(n, args.baseline)
    if args.only:
        runs = {k: v for k, v in runs.items() if k in args.only.split(",")}
    names = list(runs)
    rates: dict[str, list[float]] = {k: [] for k in names}
    printing.print_machine(f"peer race: {n:,} tasks, {reps} reps")
    for rep in range(reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            with tempfile.TemporaryDirectory(prefix=f"banyan-peers-{name}-") as tmpdir:
                wall, done = runs[name](Path(tmpdir))
            rate = done / wall if wall > 0 else float("nan")
            note = ""
            if done != n:  # stopped at RUN_MAX_S: no rate, so no ratio, for this rep
                note = f" (stopped at the bound; {done / wall:.0f}/s until then)"
                rate = float("nan")
            rates[name].append(rate)
            print(
                f"rep {rep + 1} {name:13s} {done:>6} tasks in {wall:6.2f} s = {rate:7.0f}/s{note}"
            )
    print()
    rows = []
    for name in names:
        rs = rates[name]
        rows.append([name, statistics.median(rs), min(rs), max(rs)])
    printing.print_table(["contender", "median /s", "min /s", "max /s"], rows)
    report = printing.Report("peers", quick=args.quick)
    print()
    pairs = [
        ("banyan", "huey", 2.0),
        ("banyan", "hq", 2.0),
        ("banyan-0.01", "spawn", 0.55),
        ("banyan-post64", "huey-enqueue", 1.5),
        ("banyan-p0", "huey", 2.0),
        ("banyan", "banyan-p0", 1.0),
        ("banyan", "base", 1.0),
        ("banyan-0.01", "base-0.01", 1.0),
        ("base", "huey", 2.0),
        ("base", "hq", 2.0),
        ("base-0.01", "spawn", 0.55),
    ]
    for mine, peer, target in pairs:
        if mine not in rates or peer not in rates:
            continue
        ratios = [a / b for a, b in zip(rates[mine], rates[peer], strict=True)]
        text = ", ".join(f"{r:.2f}" for r in ratios)
        med = statistics.median(ratios)
        print(f"{mine}/{peer}: median {med:.2f}x (per rep: {text})")
        report.add(f"{mine} vs {peer}, {n:,} tasks", med, "x", at_least=target)
    for name in names:
        report.add(f"{name} rate, {n:,} tasks", statistics.median(rates[name]), "tasks/s")
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
