"""Claims fill the worker (issue 11): a worker with free cores and fitting
available tasks keeps claiming until it is full or nothing fits, whatever
its size. A claim hands out at most ``claim_limit`` (32) tasks, so a 64-core
worker used to run 32 of 100 one-core tasks while 32 cores stayed free."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import Cluster, wait_for
from tests.e2e.helpers import processes_with

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    # Starting hundreds of tasks on a loaded test machine can stall a worker
    # for seconds: liveness generous enough that no lease lapses meanwhile.
    liveness = {"worker_timeout_s": 30, "heartbeat_interval_s": 1, "server_timeout_s": 60}
    the_cluster = Cluster(tmp_path, settings=liveness)
    yield the_cluster
    the_cluster.close()
    for proc in [the_cluster.server, *the_cluster.workers.values()]:
        print(f"----- {proc.name} -----\n{proc.log_text()[-4000:]}")


@pytest.mark.parametrize(("cores", "tasks"), [(64, 100), (256, 300)])
def test_a_big_worker_runs_as_many_one_core_tasks_as_it_has_cores(
    cluster: Cluster, cores: int, tasks: int
) -> None:
    cluster.start_server()
    sleep = "sleep 600.4711"  # found among the processes by its unique duration
    cluster.http.submit(
        [{"command": sleep, "state": "available", "requested_resources": {"cores": 1}}] * tasks
    )
    # Claims alone fill the worker: no queued attempts beyond its cores
    # (prefetch, tests/e2e/test_prefetch.py, would hold more as running).
    cluster.start_worker("big", "--prefetch", "0", cores=cores)
    cluster.wait_connected("big")

    def full() -> bool:
        return cluster.http.count({"state": "running"}) == cores

    wait_for(full, 60, f"{cores} tasks to run")
    wait_for(lambda: len(processes_with(sleep)) >= cores, 60, f"{cores} sleeps to start")
    assert cluster.http.count({"state": "available"}) == tasks - cores
    (worker,) = [w for n, w in cluster.http.workers().items() if n == "big"]
    assert len(worker["running"]) == cores, worker
    # The ones left wait for room, and say so: no "should start momentarily".
    waiting = cluster.http.find_all({"state": "available"}, {"_id": 1})[0]["_id"]
    reason = cluster.http.get(f"/tasks/{waiting}/pending_reason").body
    assert reason["code"] == "busy", reason
