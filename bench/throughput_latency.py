"""bench/throughput.py (b): submit->start latency on idle workers (one task
at a time, its start time written by the task itself), and the spawn floor:
the same command from ``subprocess.run``, no Banyan at all."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.e2e_cluster import Cluster, wait_idle

LATENCY_TASK_MAX_S = 10.0  # one latency sample gives up after this long
LATENCY_LOOP_MAX_S = 180.0  # the whole latency loop stops after this long
IDLE_SETTLE_S = 0.05  # after a latency task ends, let the worker's re-claim round trip finish


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
        server = cluster.bench_server
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await wait_idle(http, server, cluster.bench_workers)
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
