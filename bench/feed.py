"""Event feed fan-out: commit->delivery latency of ``GET /events`` to 50 subscribers.

    .venv/bin/python bench/feed.py [--quick] [--subscribers N] [--processes K] [--json PATH]

A ``banyan-server`` on 127.0.0.1 (temp db); 50 websocket subscribers to
``/events``, spread over K client processes (default 5, 10 subscribers each,
so that parsing 50 streams is not one process's CPU); then a steady ~1,000
events/s for 10 s (5 s with --quick) from this process: every 20 ms one bulk
``POST /tasks`` of 20 small tasks, each making one ``task.created`` event
whose ``timestamp`` is its commit time (epoch s). Every subscriber records
``time.time() - event["timestamp"]`` for every event it receives. After the
load, subscribers are given at most 15 s to receive everything.

The subscriber processes, the load generator and the server share the same
CPUs (their CPU is reported apart). Every loop is bounded in count and in
time; figures are printed, never asserted. Only processes started here are
stopped (the server by its Popen, the subscriber processes by their handles).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

try:
    from bench import clients, measure, printing, profiling, servers
except ImportError:  # run as a script: put the repository root (bench/, testbed/) on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import clients, measure, printing, profiling, servers

from banyan.tokens import basic_auth_header

SUBSCRIBERS = 50
PROCESSES = 5
BATCH = 20
PERIOD_S = 0.020  # 20 tasks every 20 ms = 1,000 events/s
MAX_IN_FLIGHT = 8  # concurrent POSTs at most (the schedule catches up, bounded)
DRAIN_MAX_S = 15.0
CONNECT_MAX_S = 30.0
CHILD_MAX_S = 600.0  # a subscriber process reports and exits after this long, whatever happens
TARGET_P99_MS = 100
CLOSE_TOO_SLOW = 4429


# --- a subscriber process ------------------------------------------------------------


@dataclass
class Sub:
    index: int
    latencies: list[float] = field(default_factory=list)  # ms
    count: int = 0
    hello_seq: int | None = None
    close_code: int | None = None
    other_frames: int = 0
    error: str | None = None


async def subscribe(
    http: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    sub: Sub,
    ready: asyncio.Event,
    stop: asyncio.Event,
) -> None:
    try:
        async with http.ws_connect(f"{url}/events", headers=headers, heartbeat=None) as ws:
            first = await asyncio.wait_for(ws.receive(), timeout=CONNECT_MAX_S)
            sub.hello_seq = json.loads(first.data).get("seq")
            ready.set()
            lat = sub.latencies
            while not stop.is_set():
                try:
                    msg = await ws.receive(timeout=1.0)
                except TimeoutError:
                    continue
                if msg.type == aiohttp.WSMsgType.TEXT:
                    now = time.time()
                    frame = json.loads(msg.data)
                    if frame.get("type") == "task.created":
                        lat.append((now - frame["timestamp"]) * 1000)
                        sub.count += 1
                    else:
                        sub.other_frames += 1
                elif msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.ERROR,
                ):
                    sub.close_code = ws.close_code
                    break
    except Exception as exc:
        sub.error = f"{type(exc).__name__}: {exc}"
        ready.set()


async def child(url: str, token: str, first_index: int, count: int) -> None:
    """Subscribe ``count`` times; print ``{"ready": n}``; on the line ``expect N``
    from stdin, wait (bounded) until each got N events, then print the results."""
    headers = {"Authorization": basic_auth_header(token)}
    subs = [Sub(first_index + i) for i in range(count)]
    readies = [asyncio.Event() for _ in subs]
    stop = asyncio.Event()
    give_up = time.monotonic() + CHILD_MAX_S
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=count + 5)) as http:
        tasks = [
            asyncio.create_task(subscribe(http, url, headers, s, r, stop))
            for s, r in zip(subs, readies, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), CONNECT_MAX_S)
        print(json.dumps({"ready": sum(s.hello_seq is not None for s in subs)}), flush=True)
        cpu0 = measure.client_cpu_seconds()
        line = await asyncio.wait_for(asyncio.to_thread(sys.stdin.readline), CHILD_MAX_S)
        expected = int(line.split()[1]) if line.startswith("expect") else 0
        deadline = min(time.monotonic() + DRAIN_MAX_S, give_up)
        while time.monotonic() < deadline:
            if all(s.count >= expected or s.close_code or s.error for s in subs):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait(tasks, timeout=5)
        for t in tasks:
            t.cancel()
    results = [
        {
            "index": s.index,
            "count": s.count,
            "latencies": [round(x, 2) for x in s.latencies],
            "hello_seq": s.hello_seq,
            "close_code": s.close_code,
            "error": s.error,
        }
        for s in subs
    ]
    print(json.dumps({"subs": results, "cpu_s": measure.client_cpu_seconds() - cpu0}), flush=True)


# --- the load and the report -----------------------------------------------------------


async def generate(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], duration_s: float
) -> tuple[int, int, list[float]]:
    """Returns (tasks created, failed POSTs, POST latencies in s)."""
    body = json.dumps([{"command": "true"} for _ in range(BATCH)])
    sem = asyncio.Semaphore(MAX_IN_FLIGHT)
    created = 0
    failed = 0
    post_lat: list[float] = []

    async def post_one() -> None:
        nonlocal created, failed
        async with sem:
            t0 = time.perf_counter()
            try:
                async with http.post(
                    f"{url}/tasks",
                    data=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=30),
                ) as resp:
                    await resp.read()
                    if resp.status < 300:
                        created += BATCH
                    else:
                        failed += 1
            except (aiohttp.ClientError, TimeoutError):
                failed += 1
            post_lat.append(time.perf_counter() - t0)

    ticks = round(duration_s / PERIOD_S)
    start = time.monotonic()
    posts = []
    for i in range(ticks):
        delay = start + i * PERIOD_S - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        posts.append(asyncio.create_task(post_one()))
    await asyncio.wait(posts, timeout=60)
    return created, failed, post_lat


async def run(
    duration_s: float,
    subscribers: int,
    processes: int,
    extra_env: dict[str, str],
    profile: Path | None = None,
) -> dict[str, Any]:
    processes = max(1, min(processes, subscribers))
    with tempfile.TemporaryDirectory(prefix="banyan-feed-") as tmpdir:
        server = servers.start_server(Path(tmpdir), name="feed", env_extra=extra_env)
        children: list[asyncio.subprocess.Process] = []
        print(f"server pid {server.proc.pid} at {server.url}", flush=True)
        try:
            headers = {"Authorization": basic_auth_header(server.token)}
            post_headers = {**headers, "Content-Type": "application/json"}
            await clients.start_children(
                children,
                __file__,
                server.url,
                server.token,
                total=subscribers,
                processes=processes,
            )
            ready = [await clients.read_json_line(c, CONNECT_MAX_S + 10) for c in children]
            connected = sum(r["ready"] for r in ready)
            conn = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT + 10)
            async with aiohttp.ClientSession(connector=conn) as http:
                spy = None
                if profile is not None:
                    spy = profiling.start_py_spy(server.proc.pid, profile, duration_s=duration_s)
                with measure.Meter(server) as load:
                    t0 = time.perf_counter()
                    created, failed, post_lat = await generate(
                        http, server.url, post_headers, duration_s
                    )
                    gen_s = time.perf_counter() - t0
                    for c in children:
                        await clients.tell(c, f"expect {created}")
                    results = [await clients.read_json_line(c, DRAIN_MAX_S + 30) for c in children]
                    drain_s = time.perf_counter() - t0 - gen_s
                    subs_cpu_s = sum(r["cpu_s"] for r in results)
                if spy is not None:
                    clients.stop_process(spy, grace_s=30)
        finally:
            await clients.reap(children)
            rc = server.stop()
    subs = [s for r in results for s in r["subs"]]
    return {
        "subs": subs,
        "created": created,
        "failed": failed,
        "post_lat": post_lat,
        "gen_s": gen_s,
        "drain_s": drain_s,
        "connected": connected,
        "load": load,
        "subs_cpu_s": subs_cpu_s,
        "rc": rc,
        "processes": processes,
    }


def report(r: dict[str, Any], duration_s: float, subscribers: int, out: printing.Report) -> None:
    subs, created, load = r["subs"], r["created"], r["load"]
    counts = [s["count"] for s in subs]
    ms = [x for s in subs for x in s["latencies"]]
    dropped = [s for s in subs if s["close_code"] == CLOSE_TOO_SLOW]
    closed_other = [s for s in subs if s["close_code"] not in (None, CLOSE_TOO_SLOW)]
    errors = [s for s in subs if s["error"]]
    total = sum(counts)
    wall = load.wall_s
    p50, p99 = measure.percentile(ms, 50), measure.percentile(ms, 99)
    got_all = sum(1 for c in counts if c >= created)
    post_lat = r["post_lat"]
    rows = [
        ("duration of load (s)", r["gen_s"]),
        ("events generated (task.created)", created),
        ("generation rate (events/s)", created / r["gen_s"] if r["gen_s"] else float("nan")),
        ("failed POSTs", r["failed"]),
        (
            "POST latency p50 / p99 (ms)",
            f"{measure.percentile(post_lat, 50) * 1000:.1f} / "
            f"{measure.percentile(post_lat, 99) * 1000:.1f}",
        ),
        ("subscribers connected", f"{r['connected']} / {subscribers} in {r['processes']} procs"),
        ("events delivered per subscriber min / max", f"{min(counts):,} / {max(counts):,}"),
        ("subscribers that got all events", got_all),
        ("total deliveries", total),
        ("deliveries/s across all subscribers (load + drain)", total / wall if wall else 0.0),
        ("drain after load (s)", r["drain_s"]),
        ("latency p50 (ms)", p50),
        ("latency p99 (ms)", p99),
        ("latency max (ms)", max(ms) if ms else float("nan")),
        ("dropped (close 4429)", len(dropped)),
        ("closed otherwise / errors", f"{len(closed_other)} / {len(errors)}"),
        ("server CPU (% of one CPU)", 100 * load.server_cpu_s / wall),
        ("server CPU per delivery (us)", 1e6 * load.server_cpu_s / total if total else 0.0),
        ("subscribers' CPU per delivery (us)", 1e6 * r["subs_cpu_s"] / total if total else 0.0),
        ("subscriber processes CPU (% of one CPU, all)", 100 * r["subs_cpu_s"] / wall),
        ("load generator CPU, this process (% of one CPU)", 100 * load.client_cpu_s / wall),
        (
            "other processes CPU (% of one CPU)",
            100 * max(0.0, load.other_cpu_s - r["subs_cpu_s"]) / wall,
        ),
        ("server exit code", r["rc"] if r["rc"] is not None else "-"),
    ]
    print(
        f"== feed fan-out: {subscribers} subscribers, {BATCH} tasks every "
        f"{PERIOD_S * 1000:.0f} ms for {duration_s:.0f} s"
    )
    printing.print_table(["measure", "value"], rows)
    print(
        f"note: the subscriber processes, the load generator (this process) and the "
        f"server share {printing.cpu_count()} CPU(s)"
    )
    verdict = "meets" if p99 <= TARGET_P99_MS else "misses"
    print(
        f"target for context: p99 <= {TARGET_P99_MS} ms at 1,000 events/s "
        f"(this run: p99 {p99:.1f} ms, {verdict} it)"
    )
    for s in (closed_other + errors)[:5]:
        print(f"  subscriber {s['index']}: close code {s['close_code']}, error {s['error']}")
    note = f"{got_all}/{subscribers} got all {created:,} events; p50 {p50:.0f} ms"
    out.add(
        f"feed: {subscribers} subscribers, 1,000 ev/s, commit->delivery p99",
        p99,
        "ms",
        at_most=TARGET_P99_MS,
        note=note,
    )
    out.add("feed: deliveries/s across all subscribers", total / wall if wall else 0.0, "/s")
    if total:
        out.add("feed: server CPU per delivery", 1e6 * load.server_cpu_s / total, "us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="5 s of load instead of 10 s")
    parser.add_argument("--subscribers", type=int, default=SUBSCRIBERS)
    parser.add_argument(
        "--processes", type=int, default=PROCESSES, help="client processes sharing them"
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="K=V",
        help="an extra environment variable for the server (e.g. BANYAN_EVENT_SEND_TIMEOUT_S=5)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="RAW",
        help="py-spy the server during the load; collapsed stacks to RAW, top functions printed",
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    printing.add_json_option(parser)
    args = parser.parse_args()
    if args.child:
        url, token, first, count = args.child
        asyncio.run(child(url, token, int(first), int(count)))
        return
    extra_env = dict(kv.split("=", 1) for kv in args.server_env)
    if args.profile:
        args.profile = args.profile.resolve()
    printing.print_machine("bench/feed.py" + (" (--quick)" if args.quick else ""))
    duration_s = 5.0 if args.quick else 10.0
    result = asyncio.run(run(duration_s, args.subscribers, args.processes, extra_env, args.profile))
    out = printing.Report("feed", quick=args.quick)
    report(result, duration_s, args.subscribers, out)
    out.write(args.json)
    if args.profile is not None and args.profile.exists():
        print(f"\nserver profile during the load (py-spy, raw stacks in {args.profile})")
        for own in (True, False):
            print("by own samples" if own else "by samples anywhere on the stack")
            rows = [[name, pct] for name, pct in profiling.top_frames(args.profile, own=own)]
            printing.print_table(["function", "% samples"], rows)


if __name__ == "__main__":
    main()
