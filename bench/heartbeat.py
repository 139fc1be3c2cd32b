"""1,000 simulated workers heartbeating: what keeping them costs the server.

    .venv/bin/python bench/heartbeat.py [--quick] [--workers N] [--processes K]
        [--window S] [--interval S] [--json PATH]

A ``banyan-server`` on 127.0.0.1 (temp db). First its idle CPU and RSS with
no worker (a short window); then N simulated workers (default 1,000) in K
client processes (default 4): each one a websocket to ``/workers/connect``
speaking the real protocol (``banyan.protocol``): ``hello`` with a capacity
and a queue no task uses, the server's ``welcome``, one ``claim`` (as a
worker does on connecting; the answer is an empty ``assigned``), then a
``heartbeat`` every ``heartbeat_interval_s`` from the welcome (the server's
default, 5 s; ``--interval`` sets the server's setting), each worker at its
own phase so that beats are spread over the interval. Once all are connected
and ``GET /workers`` shows them idle, one interval of warm-up, then the
server's CPU (psutil, user + system, all threads) and RSS over a fixed
window (60 s; 15 s with --quick); and ``GET /workers`` latency with all of
them listed.

Every loop is bounded in count and in time; figures are printed, never
asserted. Only processes started here are stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
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

WORKERS = 1_000
PROCESSES = 4
CONNECT_MAX_S = 120.0
CHILD_MAX_S = 900.0  # a client process gives up and reports after this long
IDLE_WINDOW_S = 5.0
QUEUE = "heartbeat-bench"  # no task is ever submitted to it
CAPACITY = Resources.model_validate({"cores": 4, "memory": "8 GiB"})


# --- a client process ------------------------------------------------------------------


class SimWorker:
    """One simulated worker: hello, welcome, a claim, then heartbeats until stopped."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.connected = False
        self.beats = 0
        self.frames_in = 0
        self.close_code: int | None = None
        self.error: str | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()

    async def run(
        self,
        http: aiohttp.ClientSession,
        url: str,
        ready: asyncio.Event,
        rng: random.Random,
    ) -> None:
        try:
            async with http.ws_connect(
                f"{url}/workers/connect", heartbeat=None, max_msg_size=p.MAX_FRAME_BYTES
            ) as ws:
                self.ws = ws
                hello = p.Hello(name=self.name, capacity=CAPACITY, queues=[QUEUE], pid=0)
                await ws.send_str(p.encode(hello))
                first = await ws.receive(timeout=CONNECT_MAX_S)
                welcome = p.decode_server_frame(first.data)
                if not isinstance(welcome, p.Welcome):
                    raise RuntimeError(f"expected welcome, got {first.data!r}")
                await ws.send_str(p.encode(p.Claim(free=CAPACITY, limit=1)))
                self.connected = True
                ready.set()
                beats = asyncio.create_task(self._beat(ws, welcome.heartbeat_interval_s, rng))
                try:
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        p.decode_server_frame(msg.data)
                        self.frames_in += 1
                finally:
                    beats.cancel()
                self.close_code = ws.close_code
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            ready.set()

    async def _beat(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        interval_s: float,
        rng: random.Random,
    ) -> None:
        await asyncio.sleep(rng.uniform(0, interval_s))  # spread the beats over the interval
        frame = p.encode(p.Heartbeat())
        while not ws.closed:
            await ws.send_str(frame)
            self.beats += 1
            await asyncio.sleep(interval_s)


async def child(url: str, token: str, first: int, count: int) -> None:
    """Run ``count`` workers; print ``{"ready": n}`` once all said hello, then
    on the stdin line ``stop`` close them and print their counts."""
    headers = {"Authorization": basic_auth_header(token)}
    sims = [SimWorker(f"sim-{first + i:05d}") for i in range(count)]
    readies = [asyncio.Event() for _ in sims]
    rng = random.Random(first)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as http:
        tasks = [
            asyncio.create_task(w.run(http, url, r, rng))
            for w, r in zip(sims, readies, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), CONNECT_MAX_S)
        print(json.dumps({"ready": sum(w.connected for w in sims)}), flush=True)
        cpu0 = measure.client_cpu_seconds()
        await asyncio.wait_for(asyncio.to_thread(sys.stdin.readline), CHILD_MAX_S)
        cpu_s = measure.client_cpu_seconds() - cpu0
        await asyncio.wait_for(asyncio.gather(*(w.close() for w in sims)), 30)
        await asyncio.wait(tasks, timeout=5)
        for t in tasks:
            t.cancel()
    errors = [w.error for w in sims if w.error]
    result = {
        "connected": sum(w.connected for w in sims),
        "beats": sum(w.beats for w in sims),
        "frames_in": sum(w.frames_in for w in sims),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "cpu_s": cpu_s,
    }
    print(json.dumps(result), flush=True)


# --- the measurement ---------------------------------------------------------------------


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def rss_mib(proc: psutil.Process) -> float:
    return float(proc.memory_info().rss) / 2**20


async def idle_workers(
    http: aiohttp.ClientSession, server: servers.BenchServer
) -> tuple[int, float]:
    """(workers ``GET /workers`` shows idle, that request's seconds)."""
    t0 = time.perf_counter()
    async with http.get(f"{server.url}/workers", headers=server.headers) as resp:
        body = await resp.json()
    elapsed = time.perf_counter() - t0
    return sum(1 for w in body["_items"] if w["state"] == "idle"), elapsed


async def run(args: argparse.Namespace) -> dict[str, Any]:
    env = {} if args.interval is None else {"BANYAN_HEARTBEAT_INTERVAL_S": str(args.interval)}
    processes = max(1, min(args.processes, args.workers))
    out: dict[str, Any] = {"workers": args.workers, "processes": processes}
    with tempfile.TemporaryDirectory(prefix="banyan-hb-") as tmpdir:
        server = servers.start_server(Path(tmpdir), name="hb", env_extra=env)
        children: list[asyncio.subprocess.Process] = []
        try:
            proc = psutil.Process(server.proc.pid)
            c0, t0 = cpu_s(proc), time.perf_counter()
            await asyncio.sleep(IDLE_WINDOW_S)
            out["idle_cpu_pct"] = 100 * (cpu_s(proc) - c0) / (time.perf_counter() - t0)
            out["rss_idle_mib"] = rss_mib(proc)

            t_connect = time.perf_counter()
            c_connect = cpu_s(proc)
            await clients.start_children(
                children,
                __file__,
                server.url,
                server.token,
                total=args.workers,
                processes=processes,
            )
            ready = [await clients.read_json_line(c, CONNECT_MAX_S + 30) for c in children]
            out["connected"] = sum(r["ready"] for r in ready)
            async with aiohttp.ClientSession() as http:
                deadline = time.monotonic() + CONNECT_MAX_S
                idle = 0
                while time.monotonic() < deadline:
                    idle, _ = await idle_workers(http, server)
                    if idle >= out["connected"]:
                        break
                    await asyncio.sleep(0.5)
                out["connect_s"] = time.perf_counter() - t_connect
                out["connect_cpu_s"] = cpu_s(proc) - c_connect
                out["idle_listed"] = idle
                interval = args.interval or 5.0
                await asyncio.sleep(interval)  # warm-up: every worker has beaten once
                with measure.Meter(server) as window:
                    c0, t0 = cpu_s(proc), time.perf_counter()
                    rss_samples = []
                    while time.perf_counter() - t0 < args.window:
                        await asyncio.sleep(min(1.0, args.window))
                        rss_samples.append(rss_mib(proc))
                    out["cpu_pct"] = 100 * (cpu_s(proc) - c0) / (time.perf_counter() - t0)
                out["window_s"] = window.wall_s
                out["other_cpu_pct"] = 100 * window.other_cpu_s / window.wall_s
                out["rss_mib"] = max(rss_samples)
                out["threads"] = proc.num_threads()
                out["fds"] = proc.num_fds()
                listing = [(await idle_workers(http, server))[1] for _ in range(10)]
                out["list_ms"] = statistics.median(listing) * 1000
            for c in children:
                await clients.tell(c, "stop")
            results = [await clients.read_json_line(c, 60) for c in children]
            out["beats"] = sum(r["beats"] for r in results)
            out["errors"] = sum(r["errors"] for r in results)
            out["first_error"] = next((r["first_error"] for r in results if r["first_error"]), None)
            clients_cpu = sum(r["cpu_s"] for r in results)
            out["clients_cpu_pct"] = 100 * clients_cpu / max(window.wall_s, 1e-9)
        finally:
            await clients.reap(children)
            out["server_rc"] = server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a 15 s window instead of 60 s")
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--processes", type=int, default=PROCESSES, help="client processes")
    parser.add_argument("--window", type=float, default=None, help="measured seconds")
    parser.add_argument(
        "--interval", type=float, default=None, help="the server's heartbeat_interval_s (5)"
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    printing.add_json_option(parser)
    args = parser.parse_args()
    if args.child:
        url, token, first, count = args.child
        asyncio.run(child(url, token, int(first), int(count)))
        return
    if args.window is None:
        args.window = 15.0 if args.quick else 60.0
    printing.print_machine("bench/heartbeat.py" + (" (--quick)" if args.quick else ""))
    r = asyncio.run(run(args))
    interval = args.interval or 5.0
    rate = r["workers"] / interval
    print(
        f"== {r['workers']:,} simulated workers in {r['processes']} client processes, "
        f"a heartbeat each every {interval:g} s (~{rate:,.0f} frames/s)"
    )
    printing.print_table(
        ["measure", "value"],
        [
            ("server CPU idle, no workers (% of one CPU)", r["idle_cpu_pct"]),
            ("server RSS idle, no workers (MiB)", r["rss_idle_mib"]),
            ("workers connected (hello -> welcome)", r["connected"]),
            ("workers listed idle by GET /workers", r["idle_listed"]),
            ("time to connect them all (s)", r["connect_s"]),
            ("server CPU while they connected (s)", r["connect_cpu_s"]),
            (f"server CPU over {r['window_s']:.0f} s of heartbeats (% of one CPU)", r["cpu_pct"]),
            ("server RSS with them connected (MiB, max)", r["rss_mib"]),
            ("server threads / open fds", f"{r['threads']} / {r['fds']}"),
            ("GET /workers with all of them (ms, median of 10)", r["list_ms"]),
            ("heartbeats sent in all", r["beats"]),
            ("worker errors", r["errors"]),
            ("client processes CPU (% of one CPU, all)", r["clients_cpu_pct"]),
            ("other processes CPU (% of one CPU)", r["other_cpu_pct"]),
        ],
    )
    if r["first_error"]:
        print(f"first worker error: {r['first_error']}")
    report = printing.Report("heartbeat", quick=args.quick)
    report.add(
        f"{r['workers']:,} workers heartbeating every {interval:g} s: server CPU",
        r["cpu_pct"],
        "% of a CPU",
        note=f"{r['connected']:,} connected, idle server {r['idle_cpu_pct']:.1f} %",
    )
    report.add(
        f"{r['workers']:,} workers connected: server RSS",
        r["rss_mib"],
        "MiB",
        note=f"{r['rss_idle_mib']:.0f} MiB with none",
    )
    report.write(args.json)


if __name__ == "__main__":
    main()
