"""The shared harness (``testbed``) ends everything it started: the server,
the workers and the task processes they left behind, by PID."""

from __future__ import annotations

import socket
from pathlib import Path

import psutil
import pytest

from testbed import Cluster, Http, Server, free_port, wait_for

pytestmark = pytest.mark.slow


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_close_ends_the_server_the_workers_and_their_tasks(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        cluster.start_server()
        worker = cluster.start_worker("w1")
        cluster.wait_connected("w1")
        (task_id,) = cluster.http.submit([{"command": "sleep 60", "state": "available"}])
        cluster.http.wait_state(task_id, "running", timeout=20)
        worker.remember_descendants()
        task_pids = list(worker.descendants)
        assert task_pids  # the task's shell (and the reaper sidecar)
        server_pid = cluster.server.pid
    for pid in [server_pid, worker.pid, *task_pids]:
        wait_for(lambda pid=pid: gone(pid), 10, f"process {pid} to be gone")


def test_a_created_token_is_accepted_by_the_running_server(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        cluster.start_server()
        token = cluster.server.create_token("provider", "alice")
        assert Http(cluster.url, token).get("/tasks").status == 200
        assert Http(cluster.url, token + "x").get("/tasks").status == 401


def test_a_server_that_exits_at_start_raises_with_its_log(tmp_path: Path) -> None:
    server = Server(tmp_path, args=["--no-such-flag"])
    with pytest.raises(RuntimeError, match="exited with"):
        server.start(timeout_s=20)
    assert "--no-such-flag" in server.log_text()


def test_free_port_is_free_on_loopback() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # would raise if something held it
