"""Event subscribers disconnected at random points and resumed with ``since``.

Two workers run a stream of short tasks (created, running and terminated
events, heartbeats) while ``subscribers`` raw websocket subscribers follow
``/events``. Each one connects through its own loopback proxy, which resets
its connection at random moments, and also hangs up by itself after a random
number of events; every time it reconnects with ``since=<last seq it got>``.
At the end each must have received every event the server stored after its
first ``since``, once, in order (the reference is the ``events`` table).
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from tests.faults.harness import Api, Scene, Subscriber
from tests.faults.history import FaultResult, check
from tests.faults.proxy import Proxy

RESUME_MAX_S = 60.0  # the stream goes on at most this long for a subscriber not yet resumed


def run_feed_resume(
    workdir: Path, scale: int = 10_000, *, subscribers: int = 4, seed: int = 5
) -> FaultResult:
    return asyncio.run(_run(workdir, scale, subscribers, seed))


async def _run(workdir: Path, scale: int, subscribers: int, seed: int) -> FaultResult:
    scene = Scene(workdir, "feed")
    rng = random.Random(seed)
    cluster = scene.cluster
    await asyncio.to_thread(cluster.start_server)
    api = Api(cluster.url, cluster.token)
    proxies: list[Proxy] = []
    subs: list[Subscriber] = []
    stop = asyncio.Event()
    cuts = 0

    async def disrupt(proxy: Proxy) -> None:
        nonlocal cuts
        while not stop.is_set():
            await asyncio.sleep(rng.uniform(0.1, 1.5))
            proxy.cut("drop")  # resets the subscriber's connection mid-stream
            cuts += 1
            await asyncio.sleep(rng.uniform(0, 0.3))
            proxy.heal()

    try:
        for name in ("w1", "w2"):
            cluster.start_worker(name, cores=4)
        await asyncio.to_thread(cluster.wait_connected, "w1", "w2")
        for i in range(subscribers):
            proxy = await Proxy.start(cluster.port)
            proxies.append(proxy)
            sub = Subscriber(api, url=proxy.url, close_after=(20, 3000), seed=seed + i)
            sub.start()
            subs.append(sub)
        disrupters = [asyncio.create_task(disrupt(p)) for p in proxies]
        submitted = 0
        # Past ``scale``, go on (bounded) until every subscriber has been cut and
        # has resumed at least once: on a fast run the stream may otherwise end
        # before a proxy's first random cut.
        resumed_by = time.monotonic() + RESUME_MAX_S
        while submitted < scale or (
            any(s.feed.connections < 2 for s in subs) and time.monotonic() < resumed_by
        ):
            batch = [
                scene.task(":", cores=0.1) for _ in range(max(50, min(250, scale - submitted)))
            ]
            await api.submit_all(scene.history, batch)
            submitted += len(batch)
            await asyncio.sleep(len(batch) / 500)  # events keep coming while they are cut
        await scene.finish(api, timeout_s=120 + scale / 20)
        stop.set()
        for p in proxies:
            p.heal()
        await asyncio.gather(*disrupters)
        for p in proxies:
            p.heal()
        await scene.record(api, subs)
        result = check("feed subscribers cut and resumed", scene.history)
        result.faults_injected = sum(s.feed.connections - 1 for s in subs)  # resumes
        result.details["proxy_resets"] = cuts
        result.details["events"] = len(scene.history.reference_seqs)
        result.details["connections"] = [s.feed.connections for s in subs]
        result.details["deliveries"] = sum(len(s.feed.seqs) for s in subs)
        result.wall_s = time.monotonic() - scene.started
        return result
    finally:
        stop.set()
        for sub in subs:
            await sub.stop()
        for p in proxies:
            await p.close()
        await api.close()
        await asyncio.to_thread(scene.close)
