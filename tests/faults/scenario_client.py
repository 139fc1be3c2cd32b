"""Client retries across server kills (issue 11): ``banyan.client`` submits
while the server is ``kill -9``ed ``reps`` times and restarted on the same
database and port, each time at the worst moment: right after it committed a
submit and before its answer reached the client (``tests.faults.relay``).
Each submit carries its ``Idempotency-Key`` and is retried by the client on
a failed connection, so a submit whose answer died with the server is
answered by the restarted one. Counted: twins (a submit's task made
more than once), acknowledged submits whose tasks are missing, and submits
the client gave up on. Tasks are held (``inactive``): no worker is needed to
count them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

from banyan.client.discovery import Connection
from banyan.client.http import Client
from banyan.errors import BanyanError
from tests.faults.harness import Api, Scene
from tests.faults.history import FaultResult, percentiles
from tests.faults.relay import KillRelay

# Enough retries, from 50 ms doubling up to 5 s, to outlast any restart here.
RETRIES = 12
FIRST_RETRY_S = 0.05


def run_client_retries(
    workdir: Path, scale: int = 10_000, *, reps: int = 8, submitters: int = 4, seed: int = 1
) -> FaultResult:
    return asyncio.run(_run(workdir, scale, reps=reps, submitters=submitters, seed=seed))


async def _run(workdir: Path, scale: int, *, reps: int, submitters: int, seed: int) -> FaultResult:
    scene = Scene(workdir, "client-retries")
    rng = random.Random(seed)
    cluster = scene.cluster
    await asyncio.to_thread(cluster.start_server)
    relay = KillRelay(cluster)
    await relay.start()
    connection = Connection(server=relay.url, token=cluster.token)
    expected: dict[str, int] = {}  # task name -> 1, for every acknowledged submit
    counts = {"acked": 0, "gave_up": 0, "submits": 0}
    restarts: list[float] = []
    try:
        async with Client(
            connection, timeout_s=10, submit_retries=RETRIES, retry_first_s=FIRST_RETRY_S
        ) as client:

            async def submitter(who: int) -> None:
                n = 0
                while counts["acked"] < scale:
                    n += 1
                    size = 1 if rng.random() < 0.3 else rng.randint(2, 20)
                    names = [f"c{who}-{n}-{j}" for j in range(size)]
                    body = [{"command": "true", "name": name} for name in names]
                    counts["submits"] += 1
                    try:
                        await client.submit(body if size > 1 else body[0])
                    except BanyanError:
                        counts["gave_up"] += 1
                        continue
                    counts["acked"] += size
                    expected.update(dict.fromkeys(names, 1))

            async def killer() -> None:
                for i in range(reps):
                    due = scale * (i + 1) // (reps + 1)
                    while counts["acked"] < due:
                        await asyncio.sleep(0.005)
                    relay.arm()
                    restarts.append(await relay.wait_restarted())

            await asyncio.gather(killer(), *(submitter(i) for i in range(submitters)))
        api = Api(cluster.url, cluster.token)
        try:
            made = Counter(t["name"] for t in await _all_names(api))
        finally:
            await api.close()
        result = FaultResult("client retries across server kills")
        result.tasks = counts["acked"]
        result.faults_injected = len(restarts)
        result.restart_s = percentiles(restarts)
        result.twins = sum(c - 1 for c in made.values() if c > 1)
        result.acknowledged_lost = sum(1 for name in expected if name not in made)
        result.details = {
            "submits": counts["submits"],
            "gave_up": counts["gave_up"],
            "made_unacknowledged": sum(1 for name in made if name not in expected),
        }
        result.wall_s = time.monotonic() - scene.started
        return result
    finally:
        await relay.close()
        await asyncio.to_thread(scene.close)


async def _all_names(api: Api) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    page = 1
    while True:
        body = await api.ok(
            "GET", "/tasks", projection={"name": 1}, max_results="1000", page=str(page)
        )
        found += body["_items"]
        if len(found) >= body["_meta"]["total"] or not body["_items"]:
            return found
        page += 1
