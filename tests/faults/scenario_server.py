"""The server ``kill -9``ed during bursts of submits, claims and completions,
``reps`` times, and restarted at once on the same database and port.

A paced submitter keeps sending bulk and single POSTs (client-chosen ids, so
an unanswered request can be looked for afterwards), two workers keep
claiming and completing short tasks, and a subscriber follows the feed
across the restarts. Workers re-attach within ``worker_timeout_s``, so every
acknowledged task must run exactly once and succeed.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from tests.faults.harness import Api, Scene, Subscriber
from tests.faults.history import FaultResult, check, percentiles


def run_server_kill(
    workdir: Path, scale: int = 10_000, *, reps: int = 5, rate: float = 250.0, seed: int = 1
) -> FaultResult:
    return asyncio.run(_run(workdir, scale, reps=reps, rate=rate, seed=seed))


async def _run(workdir: Path, scale: int, *, reps: int, rate: float, seed: int) -> FaultResult:
    scene = Scene(workdir, "server-kill")
    rng = random.Random(seed)
    cluster = scene.cluster
    # Long enough for the workers to re-attach after each restart: nothing is abandoned.
    await asyncio.to_thread(cluster.start_server, worker_timeout_s=15, server_timeout_s=60)
    api = Api(cluster.url, cluster.token, timeout_s=10)
    restarts: list[float] = []
    try:
        for name in ("w1", "w2"):
            cluster.start_worker(name, cores=4)
        await asyncio.to_thread(cluster.wait_connected, "w1", "w2")
        feed = Subscriber(api, seed=seed)
        feed.start()
        state = {"requested": 0, "acked": 0}
        began = time.monotonic()

        async def submitter() -> None:
            # Bursts: mostly bulk POSTs of up to 40, some single ones, paced to ``rate``.
            # ``scale`` acknowledged tasks; unanswered requests come on top.
            while state["acked"] < scale:
                n = 1 if rng.random() < 0.2 else rng.randint(2, 40)
                state["requested"] += n
                batch = [scene.task(f"sleep 0.0{rng.randint(0, 5)}") for _ in range(n)]
                if await api.submit(scene.history, batch):
                    state["acked"] += n
                else:
                    await asyncio.sleep(0.2)  # the server is down: a client would back off
                ahead = state["requested"] / rate - (time.monotonic() - began)
                if ahead > 0:
                    await asyncio.sleep(ahead)

        async def killer() -> None:
            for i in range(reps):
                due = scale * (i + 1) // (reps + 1)
                while state["acked"] < due:
                    await asyncio.sleep(0.01)
                restarts.append(await asyncio.to_thread(_kill_and_restart, scene))

        await asyncio.gather(killer(), *(submitter() for _ in range(4)))
        await scene.finish(api, timeout_s=120 + scale / 50, feeds=[feed])
        result = check("server kill -9", scene.history)
        result.faults_injected = len(restarts)
        result.restart_s = percentiles(restarts)
        unacked = [t for s in scene.history.submits if not s.acked for t in s.ids]
        result.details["unacknowledged"] = len(unacked)
        result.details["unacknowledged_present"] = len(set(unacked) & scene.history.present)
        # Every acknowledged task must have succeeded (its last attempt); attempts that
        # never reached a worker (claimed just before a kill) are requeued, not failed.
        last: dict[str, tuple[int, str | None]] = {}
        for a in scene.history.attempts:
            if a.task not in last or a.attempt > last[a.task][0]:
                last[a.task] = (a.attempt, a.exit_status)
        acked = {t for s in scene.history.submits if s.acked for t in s.ids}
        result.details["not_success"] = sum(
            1 for t in acked if last.get(t, (0, None))[1] != "success"
        )
        result.details["requeued_attempts"] = sum(
            1 for a in scene.history.attempts if a.exit_status != "success"
        )
        result.wall_s = time.monotonic() - scene.started
        return result
    finally:
        await api.close()
        await asyncio.to_thread(scene.close)


def _kill_and_restart(scene: Scene) -> float:
    """kill -9 the server mid-burst and start it again; seconds until it serves."""
    cluster = scene.cluster
    cluster.kill_server()
    killed = time.monotonic()
    cluster.restart_server()  # returns once /health answers 200 (polled every 50 ms)
    return time.monotonic() - killed
