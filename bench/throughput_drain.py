"""bench/throughput.py (a): one bulk ``POST /tasks`` to a fresh cluster of a
server and two workers, timed until nothing is left unterminated, with the
CPU seconds of every party and the server's commits (see bench/throughput.py's
docstring for the whole protocol)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench import measure
from bench.e2e_cluster import Cluster, count, wait_idle

BULK_TASKS = 1_000
POLL_S = 0.05
DRAIN_MAX_S = 120.0  # the throughput wait stops by itself after this long

NOT_TERMINATED = json.dumps({"state": {"$ne": "terminated"}})
RUNNING = json.dumps({"state": "running"})
FAILED = json.dumps({"execution.exit_status": {"$ne": "success"}})


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
        server = cluster.bench_server
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await wait_idle(http, server, cluster.bench_workers)
            for w in cluster.bench_workers:
                w.find_sidecars()
            counted = server.counters_file is not None
            k0 = server.counters() if counted else {}
            cpu0 = [w.cpu() for w in cluster.bench_workers]
            s0, c0, b0 = (
                server.cpu_seconds(),
                measure.client_cpu_seconds(),
                measure.busy_cpu_seconds(),
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
            client_cpu = measure.client_cpu_seconds() - c0
            machine_cpu = measure.busy_cpu_seconds() - b0
            cpu1 = [w.cpu() for w in cluster.bench_workers]
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
