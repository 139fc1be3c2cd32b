"""Server memory before and after 1,000,000 completed tasks.

    .venv/bin/python bench/rss.py [--quick] [--tasks N] [--workers W] [--json PATH]

A ``banyan-server`` on 127.0.0.1 (temp db, synchronous=FULL). Its RSS is
read (psutil) once it answers, then N tasks (default 1,000,000; 20,000 with
--quick) are completed through the real worker gateway by W simulated workers
(default 8, in 2 client processes) that speak ``banyan.protocol`` but run no
process: ``hello``, then ``claim`` (up to 256 at a time), and for every
``assigned`` attempt at once a ``finished`` report (exit status ``success``);
a claim again when the server has ``accepted`` the reports of the last batch,
or on ``work_available``. So the server does all its real work per task
(bulk create, claim, start, finish, events, the hub and the feed ring, the
statistics triggers), just without the subprocesses.

Tasks are submitted in bulk POSTs of 10,000 ``available`` tasks while fewer
than 50,000 are waiting, so the database grows as it would over a day, not
all at once. RSS is sampled every second; the figures: RSS before, peak,
after (once the last report is accepted) and after the server has gone idle;
wall time and completed tasks/s. Bounded by ``--max-s`` (default 3,600 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

try:
    from bench import clients, measure, printing, servers
except ImportError:  # run as a script: put the repository root (bench/, testbed/) on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import clients, measure, printing, servers

from banyan import protocol as p
from banyan.resources import Resources
from banyan.tokens import basic_auth_header

TASKS = 1_000_000
QUICK_TASKS = 20_000
WORKERS = 8
PROCESSES = 2
CHUNK = 10_000
BACKLOG = 50_000  # submit more while fewer than this are waiting
QUEUE = "rss-bench"
CAPACITY = Resources.model_validate({"cores": 256, "memory": "1 TiB"})
CLAIM_LIMIT = 256
CLAIM_RETRY_S = 0.5  # an empty claim is retried this long after (and on work_available)
MAX_S = 3_600.0
TASK = {"command": "true", "state": "available", "queue": QUEUE}


# --- a client process ------------------------------------------------------------------


class SimWorker:
    def __init__(self, name: str) -> None:
        self.name = name
        self.done = 0
        self.refused = 0
        self.error: str | None = None
        self._outstanding = 0  # finished reports not yet accepted
        self._claiming = False
        self._wake = asyncio.Event()

    async def run(self, http: aiohttp.ClientSession, url: str, stop: asyncio.Event) -> None:
        try:
            async with http.ws_connect(
                f"{url}/workers/connect", heartbeat=None, max_msg_size=p.MAX_FRAME_BYTES
            ) as ws:
                await ws.send_str(
                    p.encode(p.Hello(name=self.name, capacity=CAPACITY, queues=[QUEUE]))
                )
                welcome = p.decode_server_frame((await ws.receive(timeout=60)).data)
                if not isinstance(welcome, p.Welcome):
                    raise RuntimeError(f"expected welcome, got {welcome!r}")
                beat = asyncio.create_task(self._beat(ws, welcome.heartbeat_interval_s))
                retry = asyncio.create_task(self._retry(ws, stop))
                try:
                    await self._claim(ws)
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT or stop.is_set():
                            break
                        await self._handle(ws, p.decode_server_frame(msg.data))
                finally:
                    beat.cancel()
                    retry.cancel()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    async def _claim(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        if self._claiming or self._outstanding:
            return
        self._claiming = True
        await ws.send_str(p.encode(p.Claim(free=CAPACITY, limit=CLAIM_LIMIT)))

    async def _handle(self, ws: aiohttp.ClientWebSocketResponse, frame: Any) -> None:
        if isinstance(frame, p.Assigned):
            self._claiming = False
            if not frame.attempts:
                self._wake.set()  # nothing now: retry a little later
                return
            self._outstanding += len(frame.attempts)
            for attempt in frame.attempts:  # "ran" at once: report it done
                report = p.Finished(
                    task=attempt.task,
                    execution_key=attempt.execution_key,
                    exit_status="success",
                    exit_code=0,
                    usage={"cpu_s": 0.0, "max_rss_bytes": 0},
                )
                await ws.send_str(p.encode(report))
        elif isinstance(frame, p.Accepted | p.Refused):
            self._outstanding -= 1
            if isinstance(frame, p.Accepted):
                self.done += 1
            else:
                self.refused += 1
            if not self._outstanding:
                await self._claim(ws)
        elif isinstance(frame, p.WorkAvailable):
            await self._claim(ws)

    async def _retry(self, ws: aiohttp.ClientWebSocketResponse, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(CLAIM_RETRY_S)
            await self._claim(ws)

    async def _beat(self, ws: aiohttp.ClientWebSocketResponse, interval_s: float) -> None:
        frame = p.encode(p.Heartbeat())
        while not ws.closed:
            await asyncio.sleep(interval_s)
            await ws.send_str(frame)


async def child(url: str, token: str, first: int, count: int, max_s: float) -> None:
    """Run ``count`` workers; print ``{"done": n}`` every second; on the stdin
    line ``stop`` (or after ``max_s``) close them and print the totals."""
    sims = [SimWorker(f"rss-{first + i:03d}") for i in range(count)]
    stop = asyncio.Event()
    headers = {"Authorization": basic_auth_header(token)}
    async with aiohttp.ClientSession(headers=headers) as http:
        tasks = [asyncio.create_task(w.run(http, url, stop)) for w in sims]
        reader = asyncio.create_task(asyncio.to_thread(sys.stdin.readline))
        deadline = time.monotonic() + max_s
        while not reader.done() and time.monotonic() < deadline:
            await asyncio.wait({reader}, timeout=1.0)
            errors = [w.error for w in sims if w.error]
            print(json.dumps({"done": sum(w.done for w in sims), "errors": errors}), flush=True)
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks, timeout=10)
    totals = {"done": sum(w.done for w in sims), "refused": sum(w.refused for w in sims)}
    print(json.dumps({"final": totals}), flush=True)


# --- the run -------------------------------------------------------------------------------


def rss_mib(proc: psutil.Process) -> float:
    return float(proc.memory_info().rss) / 2**20


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"tasks": args.tasks}
    processes = max(1, min(PROCESSES, args.workers))
    with tempfile.TemporaryDirectory(prefix="banyan-rss-", dir=args.dir) as tmpdir:
        server = servers.start_server(Path(tmpdir), name="rss", synchronous="FULL")
        children: list[asyncio.subprocess.Process] = []
        done = [0] * processes
        errors: list[str] = []
        try:
            proc = psutil.Process(server.proc.pid)
            server.wait_idle(max_s=10)
            out["rss_before"] = rss_mib(proc)
            share = [
                args.workers // processes + (i < args.workers % processes) for i in range(processes)
            ]
            first = 0
            for n in share:
                children.append(
                    await clients.start_child(
                        __file__,
                        "--child",
                        server.url,
                        server.token,
                        str(first),
                        str(n),
                        str(args.max_s + 60),
                    )
                )
                first += n

            async def follow(i: int, c: asyncio.subprocess.Process) -> None:
                while True:
                    line = await clients.read_json_line(c, args.max_s + 120)
                    if "final" in line:
                        out.setdefault("refused", 0)
                        out["refused"] += line["final"]["refused"]
                        done[i] = line["final"]["done"]
                        return
                    done[i] = line["done"]
                    errors.extend(e for e in line["errors"] if e not in errors)

            followers = [asyncio.create_task(follow(i, c)) for i, c in enumerate(children)]
            peak = out["rss_before"]
            submitted = 0
            body = json.dumps([TASK] * CHUNK).encode()
            timeout = aiohttp.ClientTimeout(total=300)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                with measure.Meter(server) as m:
                    t0 = time.perf_counter()
                    next_sample = t0
                    while sum(done) < args.tasks and time.perf_counter() - t0 < args.max_s:
                        if errors:
                            raise RuntimeError(f"simulated worker failed: {errors[0]}")
                        if submitted < args.tasks and submitted - sum(done) < BACKLOG:
                            n = min(CHUNK, args.tasks - submitted)
                            data = body if n == CHUNK else json.dumps([TASK] * n).encode()
                            async with http.post(
                                f"{server.url}/tasks", data=data, headers=server.headers
                            ) as resp:
                                text = await resp.read()
                                if resp.status != 201:
                                    raise RuntimeError(f"bulk POST: {resp.status} {text[:300]!r}")
                            submitted += n
                        else:
                            await asyncio.sleep(0.2)
                        if time.perf_counter() >= next_sample:
                            next_sample += 1.0
                            peak = max(peak, rss_mib(proc))
                            if args.progress:
                                print(
                                    f"  {time.perf_counter() - t0:6.0f} s: {sum(done):,} done, "
                                    f"RSS {rss_mib(proc):.0f} MiB",
                                    flush=True,
                                )
                    wall = time.perf_counter() - t0
            out["completed"] = sum(done)
            out["submitted"] = submitted
            out["wall_s"] = wall
            out["server_cpu_s"] = m.server_cpu_s
            out["other_cpu_s"] = m.other_cpu_s
            out["rss_after"] = rss_mib(proc)
            out["rss_peak"] = max(peak, out["rss_after"])
            for c in children:
                await clients.tell(c, "stop")
            await asyncio.wait_for(asyncio.gather(*followers), 60)
            out["completed"] = sum(done)
            out["settle_s"] = server.wait_idle(max_s=120)
            out["rss_idle"] = rss_mib(proc)
            out["db_mib"] = sum(f.stat().st_size for f in Path(tmpdir).glob("rss.db*")) / 2**20
        finally:
            await clients.reap(children)
            out["server_rc"] = server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TASKS:,} tasks")
    parser.add_argument("--tasks", type=int, default=None, help=f"tasks to complete ({TASKS:,})")
    parser.add_argument("--workers", type=int, default=WORKERS, help="simulated workers")
    parser.add_argument("--max-s", type=float, default=MAX_S, help="stop after this long")
    parser.add_argument("--progress", action="store_true", help="a line every second")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary directory")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    printing.add_json_option(parser)
    args = parser.parse_args()
    if args.child:
        url, token, first, count, max_s = args.child
        asyncio.run(child(url, token, int(first), int(count), float(max_s)))
        return
    if args.tasks is None:
        args.tasks = QUICK_TASKS if args.quick else TASKS
    printing.print_machine("bench/rss.py" + (" (--quick)" if args.quick else ""))
    r = asyncio.run(run(args))
    rate = r["completed"] / r["wall_s"] if r["wall_s"] else float("nan")
    print(
        f"== {r['completed']:,} of {r['tasks']:,} tasks completed by {args.workers} simulated "
        "workers over the gateway (no subprocesses), synchronous=FULL"
    )
    printing.print_table(
        ["measure", "value"],
        [
            ("RSS before (MiB)", r["rss_before"]),
            ("RSS peak, sampled every second (MiB)", r["rss_peak"]),
            ("RSS after the last report (MiB)", r["rss_after"]),
            (f"RSS once idle ({r['settle_s']:.1f} s later) (MiB)", r["rss_idle"]),
            ("wall time (s)", r["wall_s"]),
            ("completed tasks/s (create + claim + finish)", rate),
            ("server CPU per task (ms)", 1000 * r["server_cpu_s"] / max(r["completed"], 1)),
            ("reports refused", r.get("refused", 0)),
            ("database on disk (MiB)", r["db_mib"]),
            ("other processes CPU (% of one CPU)", 100 * r["other_cpu_s"] / r["wall_s"]),
        ],
    )
    report = printing.Report("rss", quick=args.quick)
    report.add("server RSS before any task", r["rss_before"], "MiB")
    report.add(
        f"server RSS after {r['completed']:,} completed tasks",
        r["rss_idle"],
        "MiB",
        note=f"peak {r['rss_peak']:.0f} MiB",
    )
    report.add(f"{r['completed']:,} tasks via simulated workers", rate, "tasks/s")
    report.write(args.json)


if __name__ == "__main__":
    main()
