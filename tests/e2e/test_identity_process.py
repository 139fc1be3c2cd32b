"""A worker's identity and revocation with a real ``banyan-server``, real
``banyan-worker`` processes and ``banyan-server token`` run as its own
process (issue 11): a provider-registered token names its worker, a
``--name`` that is not the token's is refused in one line (exit 77), and a
revocation closes the worker's gateway socket and an ``/events``
subscriber's at once; the worker exits 77 and its task's run is not
accepted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from banyan.tokens import basic_auth_header
from testbed import SERVER, Cluster, Http, clean_env, wait_for
from testbed.cluster import WORKER
from testbed.procs import Proc, launch

pytestmark = pytest.mark.slow
EXIT_TOKEN_REFUSED = 77
CLOSE_UNAUTHORIZED = 4401


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path)
    the_cluster.start_server()
    yield the_cluster
    the_cluster.close()


def worker(cluster: Cluster, key: str, token: str, *args: str) -> Proc:
    """``banyan-worker --server URL --token TOKEN ARGS`` (no ``--name`` unless in ARGS)."""
    argv = [str(WORKER), "--server", cluster.url, "--token", token, "--cores", "2", *args]
    proc = launch(argv, log=cluster.tmp / f"{key}.log", env=clean_env(), cwd=cluster.tmp, name=key)
    cluster.workers[key] = proc
    return proc


def test_a_registered_token_names_its_worker_and_another_name_is_refused(
    cluster: Cluster,
) -> None:
    alice = cluster.server.create_token("provider", "alice")
    registered = Http(cluster.url, alice).ok("POST", "/workers", {"name": "w1"})
    assert registered["name"] == "alice:w1"
    proc = worker(cluster, "w1", registered["token"])
    wait_for(lambda: "alice:w1" in cluster.http.workers(), 20, "alice:w1 to connect")
    assert proc.popen.poll() is None
    assert "as alice:w1" in proc.log_text()

    other = cluster.server.create_token("worker", "w2")
    wrong = worker(cluster, "w2", other, "--name", "gpu-9")
    assert wrong.popen.wait(timeout=30) == EXIT_TOKEN_REFUSED
    log = wrong.log_text()
    assert log.count("refused this worker") == 1, log
    assert "this token belongs to worker 'w2', not 'gpu-9'" in log


def revoke(cluster: Cluster, name: str) -> float:
    """``banyan-server token revoke NAME`` in its own process; the wall-clock
    time it recorded for the revocation (taken just before its commit)."""
    subprocess.run(
        [str(SERVER), "token", "revoke", name, "--db", str(cluster.db)],
        env=clean_env(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    with contextlib.closing(sqlite3.connect(cluster.db)) as conn:
        (revoked,) = conn.execute("SELECT revoked FROM tokens WHERE name = ?", (name,)).fetchone()
    return float(revoked)


async def _revoke_while_watching(
    cluster: Cluster, proc: Proc, token: str
) -> dict[str, float | int]:
    """Subscribe to /events with the worker's token, revoke it (another
    process), and time the feed's close and the worker's exit."""
    headers = {"Authorization": basic_auth_header(token)}
    url = cluster.url.replace("http://", "ws://") + "/events"
    async with aiohttp.ClientSession() as session, session.ws_connect(url, headers=headers) as ws:
        assert json.loads((await ws.receive(timeout=10)).data)["type"] == "feed.hello"
        revoked_at = await asyncio.to_thread(revoke, cluster, "rw")
        while True:
            msg = await ws.receive(timeout=10)
            if msg.type == aiohttp.WSMsgType.CLOSE:
                feed_closed = time.time()
                code = int(msg.data)
                break
    await asyncio.to_thread(wait_for, lambda: proc.popen.poll() is not None, 10, "worker exit")
    worker_exited = time.time()
    return {
        "feed_s": feed_closed - revoked_at,
        "worker_exit_s": worker_exited - revoked_at,
        "feed_code": code,
    }


def test_revocation_closes_the_worker_and_the_feed_at_once(cluster: Cluster) -> None:
    token = cluster.server.create_token("worker", "rw")
    proc = worker(cluster, "rw", token)
    cluster.wait_connected("rw")
    (task_id,) = cluster.http.submit([{"command": "sleep 60", "state": "available"}])
    cluster.http.wait_state(task_id, "running", timeout=20)
    figures = asyncio.run(_revoke_while_watching(cluster, proc, token))
    print(
        f"revocation: feed closed after {figures['feed_s']:.3f} s, "
        f"worker exited after {figures['worker_exit_s']:.3f} s"
    )
    assert figures["feed_code"] == CLOSE_UNAUTHORIZED
    assert proc.popen.returncode == EXIT_TOKEN_REFUSED
    log = proc.log_text()
    assert "the server closed the connection: token revoked (4401)" in log, log
    assert "Traceback" not in log
    # Its run was not accepted: the server ends the attempt abandoned once the
    # worker is lost (worker_timeout_s), never with a result from it.
    cluster.http.wait_state(task_id, ("available", "terminated"), timeout=30)
    history = cluster.http.history(task_id)
    assert [h["exit_status"] for h in history] == ["abandoned (worker unreachable)"]
