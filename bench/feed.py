"""Event feed fan-out: commit->delivery latency of ``GET /events`` to 50 subscribers.

    .venv/bin/python bench/feed.py [--quick]

A ``banyan-server`` on 127.0.0.1 (temp db); 50 websocket subscribers to
``/events`` (one aiohttp ClientSession, this process); then a steady ~1,000
events/s for 10 s (5 s with --quick): every 20 ms one bulk ``POST /tasks`` of
20 small tasks, each making one ``task.created`` event whose ``timestamp`` is
its commit time (epoch s). Every subscriber records ``time.time() -
event["timestamp"]`` for every event it receives. After the load, subscribers
are given at most 15 s to receive everything.

The 50 subscribers, the load generator and the server share the same CPUs.
Every loop is bounded in count and in time; figures are printed, never
asserted. Only the server started here is stopped (by its Popen).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

try:
    from bench import common
except ImportError:  # run as a script: bench/ is on sys.path
    import common  # type: ignore[no-redef,import-not-found]

from banyan.tokens import basic_auth_header

SUBSCRIBERS = 50
BATCH = 20
PERIOD_S = 0.020  # 20 tasks every 20 ms = 1,000 events/s
MAX_IN_FLIGHT = 8  # concurrent POSTs at most (the schedule catches up, bounded)
DRAIN_MAX_S = 15.0
CONNECT_MAX_S = 30.0
TARGET_P99_MS = 100
CLOSE_TOO_SLOW = 4429


@dataclass
class Sub:
    index: int
    latencies: list[float] = field(default_factory=list)
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
    stop_at: list[float],
) -> None:
    try:
        async with http.ws_connect(f"{url}/events", headers=headers, heartbeat=None) as ws:
            first = await asyncio.wait_for(ws.receive(), timeout=CONNECT_MAX_S)
            hello = json.loads(first.data)
            sub.hello_seq = hello.get("seq")
            ready.set()
            lat = sub.latencies
            while True:
                remaining = stop_at[0] - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    msg = await asyncio.wait_for(ws.receive(), timeout=min(remaining, 1.0))
                except TimeoutError:
                    continue
                if msg.type == aiohttp.WSMsgType.TEXT:
                    now = time.time()
                    frame = json.loads(msg.data)
                    if frame.get("type") == "task.created":
                        lat.append(now - frame["timestamp"])
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


async def run(duration_s: float) -> None:
    with tempfile.TemporaryDirectory(prefix="banyan-feed-") as tmpdir:
        server = common.start_server(Path(tmpdir), name="feed")
        try:
            headers = {"Authorization": basic_auth_header(server.token)}
            post_headers = {**headers, "Content-Type": "application/json"}
            conn = aiohttp.TCPConnector(limit=SUBSCRIBERS + MAX_IN_FLIGHT + 10)
            async with aiohttp.ClientSession(connector=conn) as http:
                subs = [Sub(i) for i in range(SUBSCRIBERS)]
                readies = [asyncio.Event() for _ in subs]
                stop_at = [time.monotonic() + CONNECT_MAX_S + duration_s + 60 + DRAIN_MAX_S]
                tasks = [
                    asyncio.create_task(subscribe(http, server.url, headers, s, r, stop_at))
                    for s, r in zip(subs, readies, strict=True)
                ]
                await asyncio.wait_for(
                    asyncio.gather(*(r.wait() for r in readies)), timeout=CONNECT_MAX_S
                )
                connected = sum(1 for s in subs if s.hello_seq is not None)

                with common.Meter(server) as load:
                    t0 = time.perf_counter()
                    created, failed, post_lat = await generate(
                        http, server.url, post_headers, duration_s
                    )
                    gen_s = time.perf_counter() - t0
                    # let the subscribers receive everything (bounded)
                    deadline = time.monotonic() + DRAIN_MAX_S
                    while time.monotonic() < deadline:
                        if all(s.count >= created or s.close_code or s.error for s in subs):
                            break
                        await asyncio.sleep(0.05)
                    drain_s = time.perf_counter() - t0 - gen_s
                stop_at[0] = time.monotonic()
                await asyncio.wait(tasks, timeout=5)
                for t in tasks:
                    if not t.done():
                        t.cancel()
        finally:
            rc = server.stop()

    counts = [s.count for s in subs]
    all_lat = [x for s in subs for x in s.latencies]
    dropped = [s for s in subs if s.close_code == CLOSE_TOO_SLOW]
    closed_other = [s for s in subs if s.close_code not in (None, CLOSE_TOO_SLOW)]
    errors = [s for s in subs if s.error]
    total = sum(counts)
    wall = load.wall_s
    ms = [x * 1000 for x in all_lat]
    p50, p99 = common.percentile(ms, 50), common.percentile(ms, 99)
    rows = [
        ("duration of load (s)", gen_s),
        ("events generated (task.created)", created),
        ("generation rate (events/s)", created / gen_s if gen_s else float("nan")),
        ("failed POSTs", failed),
        (
            "POST latency p50 / p99 (ms)",
            f"{common.percentile(post_lat, 50) * 1000:.1f} / "
            f"{common.percentile(post_lat, 99) * 1000:.1f}",
        ),
        ("subscribers connected", f"{connected} / {SUBSCRIBERS}"),
        ("events delivered per subscriber min / max", f"{min(counts):,} / {max(counts):,}"),
        ("subscribers that got all events", sum(1 for c in counts if c >= created)),
        ("total deliveries", total),
        ("deliveries/s across all subscribers (load + drain)", total / wall if wall else 0.0),
        ("drain after load (s)", drain_s),
        ("latency p50 (ms)", p50),
        ("latency p99 (ms)", p99),
        ("latency max (ms)", max(ms) if ms else float("nan")),
        ("dropped (close 4429)", len(dropped)),
        ("closed otherwise / errors", f"{len(closed_other)} / {len(errors)}"),
        ("server CPU (% of one CPU)", 100 * load.server_cpu_s / wall),
        ("client CPU, this process (% of one CPU)", 100 * load.client_cpu_s / wall),
        ("other processes CPU (% of one CPU)", 100 * load.other_cpu_s / wall),
        ("server exit code", rc if rc is not None else "-"),
    ]
    print(
        f"== feed fan-out: {SUBSCRIBERS} subscribers, {BATCH} tasks every "
        f"{PERIOD_S * 1000:.0f} ms for {duration_s:.0f} s"
    )
    common.print_table(["measure", "value"], rows)
    print(
        f"note: the {SUBSCRIBERS} subscribers, the load generator (this process) and the "
        f"server share {common.cpu_count()} CPU(s)"
    )
    verdict = "meets" if p99 <= TARGET_P99_MS else "misses"
    print(
        f"target for context: p99 <= {TARGET_P99_MS} ms at 1,000 events/s "
        f"(this run: p99 {p99:.1f} ms, {verdict} it)"
    )
    for s in (closed_other + errors)[:5]:
        print(f"  subscriber {s.index}: close code {s.close_code}, error {s.error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="5 s of load instead of 10 s")
    args = parser.parse_args()
    common.print_machine("bench/feed.py")
    asyncio.run(run(5.0 if args.quick else 10.0))


if __name__ == "__main__":
    main()
