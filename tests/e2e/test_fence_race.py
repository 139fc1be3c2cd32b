"""The reaper sidecar's fence against the worker's own report (issue 15,
item 2): a task that the sidecar stopped because the lease lapsed must be
reported ``abandoned (worker stopped)``, never as its own ``failure
(SIGTERM)``, even when it ends before the worker's own lease timer fires.

The sidecar is told of lease renewals only a quarter heartbeat apart, and it
runs while the worker is frozen, so its deadline can pass before the worker's.
Here it is made to pass first on purpose: the agent runs in this process
against a real server (a long ``worker_timeout_s``, so its own lease never
lapses), and the sidecar is told that the lease ended a second ago.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from banyan.client.discovery import Connection
from banyan.resources import Resources
from testbed import Cluster, wait_for
from worker.agent import STOPPED, Agent, WorkerConfig

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path)
    the_cluster.start_server(worker_timeout_s=60, heartbeat_interval_s=5)
    yield the_cluster
    the_cluster.close()


async def test_a_task_the_sidecar_fenced_first_is_abandoned_not_failed(cluster: Cluster) -> None:
    http = cluster.http
    (task_id,) = await asyncio.to_thread(
        http.submit,
        [{"command": "sleep 100", "state": "available"}],
    )
    agent = Agent(
        WorkerConfig(
            connection=Connection(server=cluster.url, token=cluster.token),
            name="w-race",
            capacity=Resources.model_validate({"cores": 1, "memory": "1 GiB"}),
        )
    )
    running = asyncio.create_task(agent.run())
    try:

        def started() -> bool:
            return any(job.task is not None and job.task.pgid for job in agent.jobs.values())

        deadline = time.monotonic() + 20
        while not started():
            assert time.monotonic() < deadline and not running.done(), "the task did not start"
            await asyncio.sleep(0.02)
        assert agent.reaper is not None
        now = time.monotonic()
        agent.reaper.set_lease(now - 1, now + 30)  # the sidecar's deadline passed first

        def first_attempt_ended() -> bool:
            history[:] = http.history(task_id)
            return bool(history) and history[0].get("exit_status") is not None

        history: list[dict[str, Any]] = []
        await asyncio.to_thread(wait_for, first_attempt_ended, 20, "the first attempt to end")
        assert agent.fenced == 0  # the agent's own lease never lapsed
    finally:
        agent.request_stop()
        await asyncio.wait_for(running, 30)
    assert history[0]["exit_status"] == STOPPED, history
    assert history[0]["usage"]["error"].startswith("the worker's lease lapsed")
