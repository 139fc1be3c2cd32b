"""Issue 13 end to end, with a real server and real workers: wall-time limits
(a task's ``time_limit``, a worker's ``--time-limit``), begin times
(``not_before``) and the crash budget (``max_abandon_count``), with a worker
shown ``unresponsive`` before it is lost.

The server writes dates with microseconds (``date_format``), so start and end
times can be compared to the limits they obey.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from testbed import Cluster, wait_for
from tests.e2e.helpers import processes_with

pytestmark = pytest.mark.slow

PRECISE = "%Y-%m-%dT%H:%M:%S.%fZ"
ABANDONED = "abandoned (worker unreachable)"
TIME_LIMIT = "failure (time limit)"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path)
    yield the_cluster
    the_cluster.close()
    procs = ([the_cluster.server] if the_cluster.server else []) + list(
        the_cluster.workers.values()
    )
    for proc in procs:  # shown by pytest only when the test failed
        print(f"----- {proc.name} (exit {proc.popen.returncode}) -----\n{proc.log_text()}")


def marker() -> str:
    """A unique sleep duration: finds the task's process by its command line."""
    return f"{1000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"


def epoch(date: str) -> float:
    return datetime.strptime(date, PRECISE).replace(tzinfo=UTC).timestamp()


def reason(cluster: Cluster, task_id: str) -> dict[str, str]:
    return dict(cluster.http.ok("GET", f"/tasks/{task_id}/pending_reason"))


def listed_reason(cluster: Cluster, task_id: str) -> str:
    page = cluster.http.ok("GET", "/tasks", where=json.dumps({"_id": task_id}), reasons="1")
    return str(page["_items"][0]["_pending_reason"]["reason"])


# --- wall-time limits ----------------------------------------------------------------


def test_a_task_past_its_time_limit_is_stopped_as_a_failure(cluster: Cluster) -> None:
    cluster.start_server(date_format=PRECISE)
    mark = marker()
    grace = 1.0
    (task_id,) = cluster.http.submit(
        [
            {
                "command": f"sleep {mark}",
                "time_limit": "1s",
                "max_termination_time": grace,
                "state": "available",
            }
        ]
    )
    cluster.start_worker("w1")
    cluster.http.wait_state(task_id, "running", timeout=15)
    wait_for(lambda: processes_with(mark), 10, "the task's sleep to start")
    task = cluster.http.wait_state(task_id, "terminated", timeout=15)
    execution = task["execution"]
    assert execution["exit_status"] == TIME_LIMIT
    ran = epoch(execution["time_terminated"]) - epoch(execution["time_started"])
    assert 1.0 <= ran <= 1.0 + grace + 1.0, f"ran {ran:.2f} s"
    assert not processes_with(mark), "the task's process outlived its time limit"
    # The task's own failure: the retry rule, not the crash budget.
    assert task["retry_count"] == 0 and task["abandon_count"] == 0


def test_a_time_limit_is_retried_by_the_retry_rule(cluster: Cluster) -> None:
    cluster.start_server()
    (task_id,) = cluster.http.submit(
        [
            {
                "command": 'test "$BANYAN_ATTEMPT" = 2 || sleep 30',
                "time_limit": 1,
                "max_termination_time": 1,
                "max_retry_count": 1,
                "state": "available",
            }
        ]
    )
    cluster.start_worker("w1")
    task = cluster.http.wait_state(task_id, "terminated", timeout=30)
    assert task["execution"]["exit_status"] == "success" and task["retry_count"] == 1
    history = cluster.http.history(task_id)
    assert [h["exit_status"] for h in history] == [TIME_LIMIT, "success"]


def test_a_worker_s_lifetime_bounds_the_limits_it_is_given(cluster: Cluster) -> None:
    cluster.start_server()
    cluster.start_worker("short", "--time-limit", "30s")
    cluster.wait_connected("short")
    assert 0 < cluster.http.workers()["short"]["remaining_s"] <= 30
    long_id, fits_id = cluster.http.submit(
        [
            {"name": "long", "command": "true", "time_limit": 60, "state": "available"},
            {"name": "fits", "command": "true", "time_limit": 10, "state": "available"},
        ]
    )
    fits = cluster.http.wait_state(fits_id, "terminated", timeout=15)
    assert fits["execution"]["worker"] == "short"
    assert cluster.http.task(long_id)["state"] == "available"
    why = reason(cluster, long_id)
    assert why["code"] == "insufficient_time", why
    cluster.start_worker("unlimited")
    done = cluster.http.wait_state(long_id, "terminated", timeout=15)
    assert done["execution"]["worker"] == "unlimited"
    assert [h["worker"] for h in cluster.http.history(long_id)] == ["unlimited"]


def test_a_worker_stops_when_its_lifetime_ends(cluster: Cluster) -> None:
    cluster.start_server()
    worker = cluster.start_worker("brief", "--time-limit", "2s")
    cluster.wait_connected("brief")
    assert worker.popen.wait(timeout=15) == 0
    wait_for(lambda: cluster.http.workers()["brief"]["state"] == "left", 10, "brief to leave")


# --- begin times ---------------------------------------------------------------------


def test_a_task_does_not_start_before_its_begin_time(cluster: Cluster) -> None:
    cluster.start_server(date_format=PRECISE)
    cluster.start_worker("w1")
    cluster.wait_connected("w1")
    begin = time.time() + 2.0
    begin_iso = datetime.fromtimestamp(begin, UTC).isoformat()
    (task_id,) = cluster.http.submit(
        [{"command": "true", "not_before": begin_iso, "state": "available"}]
    )
    why = reason(cluster, task_id)
    assert why["code"] == "not_before" and why["reason"].startswith("not before"), why
    task = cluster.http.wait_state(task_id, "terminated", timeout=15)
    assert task["execution"]["exit_status"] == "success"
    assert epoch(task["execution"]["time_started"]) >= begin
    assert abs(epoch(task["not_before"]) - begin) < 1e-3


# --- the crash budget ----------------------------------------------------------------


def test_a_killed_worker_s_task_reruns_without_using_its_retries(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Default settings (max_retry_count 0): a worker's death is not the task's failure."""
    cluster.start_server(worker_timeout_s=3)
    mark = marker()
    second = shlex.quote(str(tmp_path / "second"))
    command = f"test -f {second} || (touch {second}; sleep {mark})"
    (task_id,) = cluster.http.submit([{"command": command, "state": "available"}])
    w1 = cluster.start_worker("w1")
    cluster.http.wait_state(task_id, "running", timeout=15)
    wait_for(lambda: processes_with(mark), 10, "the task's sleep to start")
    w1.remember_descendants()

    os.kill(w1.pid, signal.SIGKILL)
    w1.popen.wait(timeout=10)
    # Quiet for two heartbeats: shown unresponsive before it is declared lost.
    quiet = wait_for(
        lambda: (
            cluster.http.workers()["w1"]["responsive"] is False and cluster.http.workers()["w1"]
        ),
        10,
        "w1 to show as unresponsive",
    )
    assert quiet["state"] != "lost"
    # Its running task says so too.
    wait_for(
        lambda: "unresponsive" in reason(cluster, task_id)["reason"],
        5,
        "the task's reason to name its unresponsive worker",
    )
    # A page of tasks with ?reasons=1 says the same (jobs and why pending, p5).
    wait_for(
        lambda: "unresponsive" in listed_reason(cluster, task_id),
        5,
        "the task's reason in a ?reasons=1 page to name its unresponsive worker",
    )
    cluster.start_worker("w2")
    task = cluster.http.wait_state(task_id, "terminated", timeout=30)
    assert task["execution"]["exit_status"] == "success"
    assert task["execution"]["worker"] == "w2"
    assert task["retry_count"] == 0 and task["abandon_count"] == 1
    history = cluster.http.history(task_id)
    assert [(h["worker"], h["exit_status"]) for h in history] == [
        ("w1", ABANDONED),
        ("w2", "success"),
    ]


def test_a_task_ends_abandoned_past_its_crash_budget(cluster: Cluster) -> None:
    cluster.start_server(worker_timeout_s=3)
    mark = marker()
    (task_id,) = cluster.http.submit(
        [{"command": f"sleep {mark}", "max_abandon_count": 1, "state": "available"}]
    )
    for attempt, name in enumerate(("w1", "w2"), start=1):
        worker = cluster.start_worker(name)

        def running(attempt: int = attempt) -> bool:
            task = cluster.http.task(task_id)
            execution = task["execution"] or {}
            return task["state"] == "running" and execution.get("attempt") == attempt

        wait_for(running, 15, f"attempt {attempt} to run on {name}")
        wait_for(lambda: processes_with(mark), 10, "the task's sleep to start")
        worker.remember_descendants()
        os.kill(worker.pid, signal.SIGKILL)
        worker.popen.wait(timeout=10)
        wait_for(lambda: not processes_with(mark), 10, "the orphaned sleep to die")
    task = cluster.http.wait_state(task_id, "terminated", timeout=20)
    assert task["execution"]["exit_status"] == ABANDONED
    assert task["abandon_count"] == 1 and task["retry_count"] == 0
    assert [h["exit_status"] for h in cluster.http.history(task_id)] == [ABANDONED] * 2
