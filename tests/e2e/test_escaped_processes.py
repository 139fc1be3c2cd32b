"""No escaped processes, with a real server and a real ``banyan-worker``: a
task's ``setsid`` child is gone within the grace + 1 s of a cancel, and
after a ``kill -9`` of its worker; a leftover of a task that ended is killed
too (issue 11). The worker logs which containment it uses."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from testbed import Cluster, wait_for

pytestmark = pytest.mark.slow
GRACE_S = 1.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path)
    the_cluster.start_server()
    yield the_cluster
    the_cluster.close()


@pytest.fixture
def strays() -> Iterator[list[int]]:
    """Escaped pids, killed by pid at teardown if a failing test left them."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def escaped_pid(cluster: Cluster, pid_file: Path, strays: list[int]) -> int:
    def left_the_group() -> int | None:
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            return None
        try:  # $! is written before the child has run setsid
            return pid if os.getsid(pid) == pid else None
        except OSError:
            return None

    pid = wait_for(left_the_group, 20, "the setsid'd child")
    strays.append(pid)
    return pid


def submit_escaper(cluster: Cluster, pid_file: Path, tail: str = "sleep 300") -> str:
    (task_id,) = cluster.http.submit(
        [
            {
                "command": f"setsid sleep 300 & echo $! > {pid_file}; {tail}",
                "max_termination_time": GRACE_S,
                "state": "available",
            }
        ]
    )
    return task_id


@pytest.mark.parametrize("kind", ["auto", "subreaper"])
def test_a_cancel_kills_the_setsid_child(cluster: Cluster, strays: list[int], kind: str) -> None:
    pid_file = cluster.tmp / "escaped.pid"
    task_id = submit_escaper(cluster, pid_file)
    cluster.start_worker("w-cancel", "--containment", kind)
    pid = escaped_pid(cluster, pid_file, strays)
    asked = time.monotonic()
    resp = cluster.http.patch(task_id, {"state": "pending_cancellation"})
    assert resp.status == 200, resp
    wait_for(lambda: not alive(pid), GRACE_S + 5, "the setsid'd child to be killed")
    assert time.monotonic() - asked <= GRACE_S + 1.0
    task = cluster.http.wait_state(task_id, "cancelled", timeout=10)
    assert task["execution"]["exit_status"] == "cancelled"
    logged = "containment: cgroup v2 at " if kind == "auto" else "containment: subreaper"
    if kind == "auto" and "containment: subreaper" in cluster.workers["w-cancel"].log_text():
        logged = "containment: subreaper"  # no writable cgroup v2 on this machine
    assert logged in cluster.workers["w-cancel"].log_text()
    # The worker says so in its hello, and GET /workers shows it.
    shown = cluster.http.workers()["w-cancel"]["containment"]
    assert shown == ("cgroup" if "cgroup" in logged else "subreaper")


@pytest.mark.parametrize("kind", ["auto", "subreaper"])
def test_a_killed_worker_takes_the_setsid_child_with_it(
    cluster: Cluster, strays: list[int], kind: str
) -> None:
    pid_file = cluster.tmp / "escaped.pid"
    submit_escaper(cluster, pid_file)
    worker = cluster.start_worker("w-kill", "--containment", kind)
    pid = escaped_pid(cluster, pid_file, strays)
    cluster.wait_connected("w-kill")  # remembers its descendants for the teardown
    worker.popen.send_signal(signal.SIGKILL)
    worker.popen.wait(timeout=10)
    wait_for(lambda: not alive(pid), 5, "the setsid'd child to die with its worker")


@pytest.mark.parametrize("kind", ["auto", "subreaper"])
def test_a_task_that_ends_leaves_nothing_behind(
    cluster: Cluster, strays: list[int], kind: str
) -> None:
    pid_file = cluster.tmp / "left.pid"
    ready = cluster.tmp / "ready"
    # The shell ends once the child has its own session, as a daemon's parent does.
    task_id = submit_escaper(cluster, pid_file, tail=f"while [ ! -e {ready} ]; do sleep 0.01; done")
    cluster.start_worker("w-end", "--containment", kind)
    pid = escaped_pid(cluster, pid_file, strays)
    ready.touch()
    task = cluster.http.wait_state(task_id, "terminated", timeout=20)
    assert task["execution"]["exit_status"] == "success"
    wait_for(lambda: not alive(pid), 5, "the leftover to be killed at the task's end")
