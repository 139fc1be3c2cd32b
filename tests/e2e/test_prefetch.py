"""Prefetch end to end (issue 12), with a real server and real workers: a
worker holds queued attempts beyond what it runs. Each rule: the queued
attempt shows as queued with no ``time_started``; cancelling it is immediate
and starts no process; a worker ``kill -9``ed with a full queue loses nothing
and runs nothing twice; a worker stopped (with and without ``--drain``) hands
its queue back uncounted; an idle worker gets the tasks rather than them
waiting in a busy worker's queue.

Commands append ``$BANYAN_TASK_ID`` to ``runs.log`` when they run; the first
task of each test blocks until the test creates its ``release`` file.
"""

from __future__ import annotations

import shlex
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed import Cluster, wait_for
from tests.e2e.helpers import until_file

pytestmark = pytest.mark.slow

RETURNED = "returned (not started)"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path)
    yield the_cluster
    the_cluster.close()
    procs = ([the_cluster.server] if the_cluster.server else []) + list(
        the_cluster.workers.values()
    )
    for proc in procs:
        print(f"----- {proc.name} (exit {proc.popen.returncode}) -----\n{proc.log_text()}")


def recorded(runs: Path, body: str = "true") -> str:
    return f"echo $BANYAN_TASK_ID >> {shlex.quote(str(runs))}; {body}"


def runs_of(runs: Path) -> Counter[str]:
    return Counter(runs.read_text().split()) if runs.exists() else Counter()


def is_queued(doc: dict[str, Any]) -> bool:
    execution = doc.get("execution") or {}
    return doc["state"] == "running" and bool(execution.get("queued"))


def blocked_with_queue(
    cluster: Cluster, tmp_path: Path, *worker_args: str, queued: int = 2, **fields: Any
) -> tuple[str, list[str], Path, Path]:
    """Worker ``w1`` (1 core, ``--prefetch 2``) runs a blocker and holds
    ``queued`` more tasks queued; returns (blocker, queued ids, runs, release)."""
    runs, release = tmp_path / "runs.log", tmp_path / "release"
    cluster.start_server()
    cluster.start_worker("w1", "--prefetch", "2", *worker_args, cores=1)
    cluster.wait_connected("w1")
    (blocker,) = cluster.http.submit(
        [{"command": recorded(runs, until_file(release)), "state": "available", **fields}]
    )
    cluster.http.wait_state(blocker, "running", timeout=15)
    wait_for(lambda: runs_of(runs)[blocker] == 1, 10, "the blocker to start")
    waiting = cluster.http.submit(
        [{"command": recorded(runs), "state": "available", **fields}] * queued
    )
    wait_for(lambda: all(is_queued(cluster.http.task(t)) for t in waiting), 10, "the queue to fill")
    return blocker, waiting, runs, release


def test_queued_attempt_has_no_start_until_it_runs(cluster: Cluster, tmp_path: Path) -> None:
    blocker, waiting, runs, release = blocked_with_queue(cluster, tmp_path)
    worker = cluster.http.workers()["w1"]
    assert sorted(worker["queued"]) == sorted(waiting)
    assert [a["task"] for a in worker["running"]] == [blocker]
    assert worker["free"]["cores"] == 0  # queued attempts take no share
    for task_id in waiting:
        doc = cluster.http.task(task_id)
        assert doc["execution"]["time_started"] is None, doc
        assert doc["execution"]["worker"] == "w1"
        assert runs_of(runs)[task_id] == 0
    release.touch()
    for task_id in [blocker, *waiting]:
        doc = cluster.http.wait_state(task_id, "terminated", timeout=15)
        assert doc["execution"]["exit_status"] == "success", doc
        assert doc["execution"]["time_started"] is not None
        assert doc["execution"]["queued"] is False
    assert runs_of(runs) == Counter({blocker: 1, waiting[0]: 1, waiting[1]: 1})


def test_cancel_of_a_queued_attempt_is_immediate_and_starts_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    blocker, (first, second), runs, release = blocked_with_queue(cluster, tmp_path)
    assert cluster.http.patch(second, {"state": "pending_cancellation"}).status == 200
    # At once: the blocker still runs, so no slot freed for it.
    doc = cluster.http.wait_state(second, "cancelled", timeout=5)
    assert doc["execution"]["exit_status"] == "cancelled"
    assert doc["execution"]["time_started"] is None
    assert cluster.http.task(blocker)["state"] == "running"
    release.touch()
    cluster.http.wait_state(first, "terminated", timeout=15)
    assert runs_of(runs)[second] == 0
    assert runs_of(runs) == Counter({blocker: 1, first: 1})


def test_kill_9_with_a_full_queue_loses_nothing_and_runs_nothing_twice(
    cluster: Cluster, tmp_path: Path
) -> None:
    blocker, waiting, runs, release = blocked_with_queue(cluster, tmp_path, max_retry_count=1)
    w1 = cluster.workers["w1"]
    w1.popen.send_signal(signal.SIGKILL)
    w1.popen.wait(timeout=10)
    release.touch()  # the blocker's rerun ends at once
    cluster.start_worker("w2", cores=1)
    for task_id in waiting:  # back in the queue uncounted, then run once on w2
        doc = cluster.http.wait_state(task_id, "terminated", timeout=30)
        assert doc["execution"]["exit_status"] == "success", doc
        assert doc["retry_count"] == 0 and doc["abandon_count"] == 0  # returned: uncounted
        assert doc["execution"]["worker"] == "w2"
        first, second = cluster.http.history(task_id)
        assert first["exit_status"] == RETURNED and first["worker"] == "w1"
        assert first["time_started"] is None and second["time_started"] is not None
        assert second["exit_status"] == "success"
    doc = cluster.http.wait_state(blocker, "terminated", timeout=30)
    # It did run on w1: an abandonment, counted by the crash budget, not as a retry.
    assert doc["abandon_count"] == 1 and doc["retry_count"] == 0, doc
    counts = runs_of(runs)
    assert all(counts[t] == 1 for t in waiting), counts


@pytest.mark.parametrize("drain", [True, False], ids=["drain", "no-drain"])
def test_stopped_worker_hands_its_queue_back(cluster: Cluster, tmp_path: Path, drain: bool) -> None:
    args = ("--drain",) if drain else ()
    blocker, waiting, runs, release = blocked_with_queue(
        cluster, tmp_path, *args, max_retry_count=1
    )
    w1 = cluster.workers["w1"]
    w1.popen.send_signal(signal.SIGTERM)
    for task_id in waiting:
        doc = cluster.http.wait_state(task_id, "available", timeout=10)
        assert doc["retry_count"] == 0 and doc["abandon_count"] == 0, doc
        (attempt,) = cluster.http.history(task_id)
        assert attempt["exit_status"] == RETURNED
    if drain:  # the blocker still runs to its end
        assert cluster.http.task(blocker)["state"] == "running"
        release.touch()
    assert w1.popen.wait(timeout=20) == 0
    doc = cluster.http.task(blocker)
    assert doc["state"] == ("terminated" if drain else "available"), doc
    assert all(runs_of(runs)[t] == 0 for t in waiting)


def test_an_idle_worker_gets_tasks_a_busy_one_holds_queued(
    cluster: Cluster, tmp_path: Path
) -> None:
    blocker, waiting, runs, release = blocked_with_queue(cluster, tmp_path)
    cluster.start_worker("w2", "--prefetch", "2", cores=1)
    # w2 is idle: w1 hands back what it holds unstarted, and w2 runs it now.
    done = cluster.http.wait_state(waiting[0], "terminated", timeout=15)
    assert done["execution"]["worker"] == "w2"
    for task_id in waiting:
        doc = cluster.http.wait_state(task_id, "terminated", timeout=15)
        assert doc["execution"]["worker"] == "w2", doc
    assert cluster.http.task(blocker)["state"] == "running"
    assert all(runs_of(runs)[t] == 1 for t in waiting)
    release.touch()
    cluster.http.wait_state(blocker, "terminated", timeout=15)


def test_two_idle_workers_both_start_at_once(cluster: Cluster, tmp_path: Path) -> None:
    runs, release = tmp_path / "runs.log", tmp_path / "release"
    cluster.start_server()
    for name in ("w1", "w2"):
        cluster.start_worker(name, "--prefetch", "2", cores=1)
    cluster.wait_connected("w1", "w2")
    tasks = cluster.http.submit(
        [{"command": recorded(runs, until_file(release)), "state": "available"}] * 2
    )
    wait_for(lambda: all(runs_of(runs)[t] == 1 for t in tasks), 15, "both to start")
    workers = {cluster.http.task(t)["execution"]["worker"] for t in tasks}
    assert workers == {"w1", "w2"}
    release.touch()
    for task_id in tasks:
        cluster.http.wait_state(task_id, "terminated", timeout=15)
