"""What a task's environment holds, with a real server and a real worker
process started with its token and server settings in ``BANYAN_*``
variables: none of them reaches the task, ``banyan progress`` still works
through the worker's socket, and the task's own ``BANYAN_*`` values are kept
(issue 11, "tasks get no credentials")."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import BIN, WORKER, Cluster, Proc, clean_env, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path)
    the_cluster.start_server()
    yield the_cluster
    the_cluster.close()


def start_worker_with_env(cluster: Cluster, name: str, env: dict[str, str]) -> Proc:
    """A worker that finds its token and server in its environment only."""
    log = cluster.tmp / f"worker-{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [str(WORKER), "--name", name, "--cores", "2", "--memory", "1 GiB"],
            env=clean_env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cluster.tmp,
        )
    proc = Proc(popen, log, name)
    cluster.workers[name] = proc
    return proc


def test_a_tasks_env_holds_no_token_and_no_server_settings(cluster: Cluster) -> None:
    token = cluster.token
    settings_file = cluster.tmp / "settings.toml"
    settings_file.write_text("")
    worker_env = {
        "BANYAN_TOKEN": token,
        "BANYAN_SERVER": cluster.url,
        "BANYAN_CLIENT_FILE": str(cluster.tmp / "nowhere.json"),  # not the token's source
        "BANYAN_CONFIG": str(settings_file),
        "BANYAN_CA_CERT": "",
        "BANYAN_PORT": str(cluster.port),
        "BANYAN_DB": str(cluster.db),
        "BANYAN_LOG_FORMAT": "text",
    }
    start_worker_with_env(cluster, "w-env", worker_env)
    cluster.wait_connected("w-env")
    banyan = shlex.quote(str(BIN / "banyan"))
    (task_id,) = cluster.http.submit(
        [
            {
                "command": f'env; {banyan} progress 40 "half"; sleep 30',
                "env": {"BANYAN_TASK_INDEX": "7", "BANYAN_ENTRY": "x"},
                "state": "available",
                "max_termination_time": 1,
            }
        ]
    )

    def progressed() -> bool:
        execution = cluster.http.task(task_id).get("execution") or {}
        return bool(execution.get("progress"))

    wait_for(progressed, 20, "the task's progress report (through the worker's socket)")
    progress = cluster.http.task(task_id)["execution"]["progress"]
    assert (progress["percent"], progress["message"]) == (40, "half")
    out = wait_for(lambda: cluster.http.logs(task_id).get("stdout", ""), 10, "the task's env dump")
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert token not in out
    banyan_vars = {k for k in env if k.startswith("BANYAN_")}
    assert banyan_vars == {
        "BANYAN_TASK_ID",
        "BANYAN_ATTEMPT",
        "BANYAN_PROGRESS_SOCKET",
        "BANYAN_TASK_INDEX",
        "BANYAN_ENTRY",
    }, out
    assert env["BANYAN_TASK_ID"] == task_id and env["BANYAN_TASK_INDEX"] == "7"
    resp = cluster.http.patch(task_id, {"state": "pending_cancellation"})
    assert resp.status == 200, resp
    cluster.http.wait_state(task_id, "cancelled", timeout=20)
