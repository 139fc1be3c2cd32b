"""Dispatch capacity: how many tasks per second one server can hand out and
take back, with no process ever started.

    .venv/bin/python bench/dispatch.py [--quick] [--tasks N] [--workers W]
        [--slots S] [--json PATH]

A ``banyan-server`` (synchronous=FULL, the default) on 127.0.0.1 with a temp
database; N available ``true`` tasks (default request: 1 core) are submitted
in bulk first. Then W simulated workers (default 4), each a websocket to
``/workers/connect`` speaking the real protocol (``banyan.protocol``) with a
capacity of S cores (default 8), claim and finish as fast as the server
allows: every ``assigned`` attempt is answered at once with ``finished``
(success, exit code 0), followed by a new ``claim`` for the whole capacity
(with the agent's default ``limit``, 32);
an empty ``assigned`` waits for ``work_available``. The clock runs from the
first claim until the server has accepted N finished reports.

Reports tasks/s and the server's CPU per task (user + system of the server
process, all threads, from /proc) over that window, and the load generator's
own CPU (it shares the machine). Every loop is bounded; figures are printed,
never asserted. Only the server started here (and py-spy, with ``--profile
PATH``: the server's stacks while the clock runs, collapsed) is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

try:
    from bench import measure, printing, servers
except ImportError:  # run as a script: put the repository root (bench/, testbed/) on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import measure, printing, servers

from banyan import protocol as p
from banyan.resources import Resources

RUN_MAX_S = 300.0
SUBMIT_CHUNK = 5_000
TARGET_RATE = 10_000
TARGET_CPU_MS = 0.3


class SimWorker:
    """One simulated worker: claim, finish every attempt at once, claim again."""

    def __init__(
        self, name: str, slots: int, limit: int, goal: list[int], done: asyncio.Event
    ) -> None:
        self.name = name
        self.limit = limit
        self.capacity = Resources.model_validate({"cores": slots, "memory": "64 GiB"})
        self.goal = goal  # [tasks still to be accepted], shared by every sim
        self.done = done
        self.accepted = 0
        self.refused = 0

    async def run(self, http: aiohttp.ClientSession, url: str, go: asyncio.Event) -> None:
        async with http.ws_connect(
            f"{url}/workers/connect", heartbeat=None, max_msg_size=p.MAX_FRAME_BYTES
        ) as ws:
            hello = p.Hello(name=self.name, capacity=self.capacity, pid=0)
            await ws.send_str(p.encode(hello))
            welcome = p.decode_server_frame((await ws.receive(timeout=30)).data)
            assert isinstance(welcome, p.Welcome), welcome
            claim = p.encode(p.Claim(free=self.capacity, limit=self.limit))
            await go.wait()
            await ws.send_str(claim)
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                frame = p.decode_server_frame(msg.data)
                if isinstance(frame, p.Assigned):
                    for a in frame.attempts:
                        finished = p.Finished(
                            task=a.task,
                            execution_key=a.execution_key,
                            exit_status="success",
                            exit_code=0,
                        )
                        await ws.send_str(p.encode(finished))
                    if frame.attempts:
                        await ws.send_str(claim)
                elif isinstance(frame, p.WorkAvailable):
                    await ws.send_str(claim)
                elif isinstance(frame, p.Accepted | p.Refused):
                    if isinstance(frame, p.Accepted):
                        self.accepted += 1
                    else:
                        self.refused += 1
                    self.goal[0] -= 1
                    if self.goal[0] <= 0:
                        self.done.set()
                if self.done.is_set():
                    break
            await ws.close()


def start_profiler(pid: int, out: Path | None) -> subprocess.Popen[bytes] | None:
    """py-spy (from this venv) sampling the server into ``out`` (collapsed
    stacks, one thread per root frame), or None without ``--profile``."""
    if out is None:
        return None
    spy = Path(sys.executable).with_name("py-spy")
    argv = [str(spy), "record", "--pid", str(pid), "--format", "raw", "--threads"]
    argv += ["--nonblocking", "--rate", "200", "-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(spy: subprocess.Popen[bytes] | None) -> None:
    """SIGINT makes py-spy write its file and exit (bounded wait, then SIGKILL)."""
    if spy is None:
        return
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()


async def run(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="banyan-dispatch-") as tmpdir:
        server = servers.start_server(Path(tmpdir), name="dispatch")
        try:
            headers = server.headers
            timeout = aiohttp.ClientTimeout(total=RUN_MAX_S)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                task = {"command": "true", "state": "available"}
                left = args.tasks
                while left > 0:
                    k = min(SUBMIT_CHUNK, left)
                    body = json.dumps([task] * k)
                    async with http.post(f"{server.url}/tasks", data=body, headers=headers) as r:
                        assert r.status == 201, await r.text()
                    left -= k
                server.wait_idle()
                goal, done, go = [args.tasks], asyncio.Event(), asyncio.Event()
                sims = [
                    SimWorker(f"sim-{i}", args.slots, args.limit, goal, done)
                    for i in range(args.workers)
                ]
                ws_headers = {"Authorization": headers["Authorization"]}
                async with aiohttp.ClientSession(headers=ws_headers) as wsh:
                    jobs = [asyncio.create_task(s.run(wsh, server.url, go)) for s in sims]
                    await asyncio.sleep(1.0)  # every sim said hello
                    spy = start_profiler(server.pid, args.profile)
                    s0, c0 = server.cpu_seconds(), measure.client_cpu_seconds()
                    t0 = time.perf_counter()
                    go.set()
                    await asyncio.wait_for(done.wait(), RUN_MAX_S)
                    wall = time.perf_counter() - t0
                    server_cpu = server.cpu_seconds() - s0
                    client_cpu = measure.client_cpu_seconds() - c0
                    stop_profiler(spy)
                    await asyncio.wait(jobs, timeout=10)
                    for j in jobs:
                        j.cancel()
        finally:
            server.stop()
    accepted = sum(s.accepted for s in sims)
    return {
        "tasks": args.tasks,
        "accepted": accepted,
        "refused": sum(s.refused for s in sims),
        "wall_s": wall,
        "rate": accepted / wall,
        "server_cpu_ms_per_task": 1000 * server_cpu / max(1, accepted),
        "client_cpu_ms_per_task": 1000 * client_cpu / max(1, accepted),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="5,000 tasks")
    parser.add_argument("--tasks", type=int, default=None, help="default 20,000")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument(
        "--limit", type=int, default=32, help="each claim's limit (the agent's default: 32)"
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy the server into PATH (collapsed)"
    )
    printing.add_json_option(parser)
    args = parser.parse_args()
    args.tasks = args.tasks or (5_000 if args.quick else 20_000)
    printing.print_machine("dispatch capacity (simulated workers, SQLite FULL)")
    out = asyncio.run(run(args))
    rows = [[k, v] for k, v in out.items()]
    printing.print_table(["figure", "value"], rows)
    report = printing.Report("dispatch", quick=args.quick)
    report.add("dispatch capacity", out["rate"], "tasks/s", at_least=TARGET_RATE)
    report.add("server CPU per task", out["server_cpu_ms_per_task"], "ms", at_most=TARGET_CPU_MS)
    report.add("load generator CPU per task", out["client_cpu_ms_per_task"], "ms")
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
