"""``batch`` frames with a real server and real workers (``protocol.BATCH_PROTOCOL``):
the worker and the server agree on batches at connect, and with prefetch on
every task runs exactly once and ends recorded as it ended, as with single
frames. The gateway's side, frame by frame, is in ``test_batch_frames``."""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import Cluster, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path)
    yield the_cluster
    the_cluster.close()
    for proc in the_cluster.workers.values():
        print(f"----- {proc.name} (exit {proc.popen.returncode}) -----\n{proc.log_text()}")


def test_workers_batch_their_frames_and_run_each_task_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.log"
    cluster.start_server()
    for name in ("w1", "w2"):
        cluster.start_worker(name, cores=1)
        cluster.wait_connected(name)
    record = f"echo $BANYAN_TASK_ID >> {shlex.quote(str(runs))}"
    tasks = [{"command": record, "state": "available"} for _ in range(60)]
    tasks += [{"command": f"{record}; exit 3", "state": "available"} for _ in range(10)]
    ids = cluster.http.submit(tasks)
    wait_for(
        lambda: cluster.http.count({"state": {"$ne": "terminated"}}) == 0,
        60,
        "every task to end",
    )
    statuses = Counter(cluster.http.task(t)["execution"]["exit_status"] for t in ids)
    assert statuses == {"success": 60, "failure": 10}, statuses
    assert Counter(runs.read_text().split()) == dict.fromkeys(ids, 1)
    for name in ("w1", "w2"):
        assert "frames batched" in cluster.workers[name].log_text(20_000)
