"""Workers that fail mid-task: ``kill -9``; ``SIGSTOP`` past
``worker_timeout_s``, then ``SIGCONT``; a network cut (a loopback proxy
between the worker and the server holds every byte, as a partition does),
then healed.

Three workers run a stream of short tasks with a few long ones among them
(so a victim is always mid-task). ``faults`` times a victim that holds a
long task is hit; each time the scenario measures detection (fault → the
``worker.lost`` event) and recovery (fault → the last of its abandoned tasks
started again elsewhere, from the tasks' own marks), probes the server with
the superseded attempt's execution key (must be 409), then heals (a new
worker replaces a killed one; a stopped one is continued; the cut is healed).
"""

from __future__ import annotations

import asyncio
import operator
import os
import random
import signal
import time
from functools import partial
from pathlib import Path
from typing import Any, Literal

from tests.faults.harness import Api, Scene, Subscriber, open_attempts, server_attempts, wait_true
from tests.faults.history import ABANDONED, FaultResult, Probe, check, percentiles
from tests.faults.proxy import Proxy

Kind = Literal["kill9", "sigstop", "netcut"]
TITLES = {
    "kill9": "worker kill -9",
    "sigstop": "worker SIGSTOP/SIGCONT",
    "netcut": "worker network cut",
}
WORKER_TIMEOUT_S = 3.0
LONG_S = 6.0  # long tasks outlive the fault → rerun window


def run_worker_fault(
    workdir: Path, scale: int = 10_000, *, kind: Kind, faults: int = 8, seed: int = 2
) -> FaultResult:
    return asyncio.run(_run(workdir, scale, kind=kind, faults=faults, seed=seed))


async def _run(workdir: Path, scale: int, *, kind: Kind, faults: int, seed: int) -> FaultResult:
    scene = Scene(workdir, kind)
    rng = random.Random(seed)
    cluster = scene.cluster
    await asyncio.to_thread(
        cluster.start_server,
        worker_timeout_s=WORKER_TIMEOUT_S,
        heartbeat_interval_s=0.5,
        server_timeout_s=WORKER_TIMEOUT_S + 2,
    )
    api = Api(cluster.url, cluster.token)
    proxies: dict[str, Proxy] = {}
    lost_at: dict[str, float] = {}

    def on_event(frame: dict[str, Any]) -> None:
        if frame["type"] == "worker.lost":
            lost_at.setdefault(frame["data"].get("name", ""), float(frame["timestamp"]))

    feed = Subscriber(api, on_event=on_event, seed=seed)
    feed.start()
    detections: list[float] = []
    recoveries: list[float] = []
    serial = 0

    async def start_worker() -> str:
        nonlocal serial
        serial += 1
        name = f"w{serial}"
        args: list[str] = []
        if kind == "netcut":
            proxies[name] = await Proxy.start(cluster.port)
            args = ["--server", proxies[name].url]
        cluster.start_worker(name, *args, cores=2)
        return name

    try:
        live = [await start_worker() for _ in range(3)]
        await asyncio.to_thread(cluster.wait_connected, *live)
        long_ids: set[str] = set()
        tasks = []
        every = 40 if scale >= 2000 else 10  # small runs need long tasks more often
        for i in range(scale):
            long = i % every == 7
            body = f"sleep {LONG_S}" if long else f"sleep 0.{rng.randint(3, 20):02d}"
            task = scene.task(body, cores=0.25, max_retry_count=10)
            tasks.append(task)
            if long:
                long_ids.add(task["_id"])
        for start in range(0, len(tasks), 1000):
            await api.submit_all(scene.history, tasks[start : start + 1000])

        for _ in range(faults):
            if await api.count({"state": {"$nin": ["terminated", "cancelled"]}}) == 0:
                break
            victim = await _victim(scene, live, long_ids)
            if victim is None:
                break
            proc = cluster.workers[victim]
            proc.remember_descendants()
            hit = time.time()
            if kind == "kill9":
                os.kill(proc.pid, signal.SIGKILL)
            elif kind == "sigstop":
                os.kill(proc.pid, signal.SIGSTOP)
            else:
                proxies[victim].cut("silent")
            await wait_true(partial(operator.contains, lost_at, victim), 60, f"{victim} lost")
            detections.append(lost_at[victim] - hit)
            abandoned = [
                a
                for a in server_attempts(scene.database)
                if a.worker == victim
                and a.exit_status == ABANDONED
                and (a.task, a.attempt) not in scene.history.abandoned
            ]
            for a in abandoned:
                scene.history.abandoned[(a.task, a.attempt)] = a.exit_status
            for a in abandoned[:3]:  # a report with the superseded key must be refused
                status, _ = await api.call(
                    "POST",
                    f"/tasks/{a.task}/update_execution_data",
                    {"execution_key": a.key, "exit_status": "success", "exit_code": 0},
                )
                scene.history.probes.append(Probe(a.task, a.attempt, status))
            rerun = await _rerun_started(scene, {(a.task, a.attempt) for a in abandoned})
            if rerun is not None:
                recoveries.append(rerun - hit)
            hold = hit + WORKER_TIMEOUT_S + 2 - time.time()  # past worker_timeout_s
            if hold > 0:
                await asyncio.sleep(hold)
            if kind == "kill9":
                await asyncio.to_thread(proc.popen.wait, 10)
                live.remove(victim)
                live.append(await start_worker())
                await asyncio.to_thread(cluster.wait_connected, live[-1])
            elif kind == "sigstop":
                os.kill(proc.pid, signal.SIGCONT)
            else:
                proxies[victim].heal()
            lost_at.pop(victim, None)
            await asyncio.to_thread(cluster.wait_connected, *live, timeout=60)
        await scene.finish(api, timeout_s=120 + scale / 20, feeds=[feed])
        result = check(TITLES[kind], scene.history)
        result.faults_injected = len(detections)
        result.loss_detect_s = percentiles(detections)
        result.recovery_s = percentiles(recoveries)
        result.details["abandoned_attempts"] = len(scene.history.abandoned)
        result.details["probes"] = len(scene.history.probes)
        result.wall_s = time.monotonic() - scene.started
        return result
    finally:
        await feed.stop()
        for proxy in proxies.values():
            await proxy.close()
        await api.close()
        await asyncio.to_thread(scene.close)


async def _victim(scene: Scene, live: list[str], long_ids: set[str]) -> str | None:
    """A live worker whose long task started less than a second ago, so that
    without a fence it would still be running when its task is rerun
    elsewhere (waits up to 30 s for one), else any busy one."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = time.time()
        for name in live:
            held = open_attempts(scene.database, name)
            if any(a.task in long_ids and now - a.started < 1.0 for a in held):
                return name
        await asyncio.sleep(0.05)
    for name in live:
        if open_attempts(scene.database, name):
            return name
    return None


async def _rerun_started(scene: Scene, abandoned: set[tuple[str, int]]) -> float | None:
    """Wall time at which the last abandoned task had started again (from the marks),
    or None if that did not happen within 60 s."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        starts: dict[str, float] = {}
        for e in scene.executions():
            for task, attempt in abandoned:
                if e.task == task and e.attempt > attempt:
                    starts[task] = min(starts.get(task, e.start), e.start)
        if len(starts) == len({t for t, _ in abandoned}):
            return max(starts.values()) if starts else None
        await asyncio.sleep(0.1)
    return None
