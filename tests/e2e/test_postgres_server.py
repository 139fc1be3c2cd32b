"""``banyan-server --db postgresql://...`` serves: a real server process on a
database of the session's throwaway PostgreSQL cluster, a real worker that
runs a small tree of tasks, their results and logs back through the REST
API, the event feed (followed with ``banyan.client``) complete and in order;
and a second server on the same database whose worker is handed work
submitted through the first and whose live feed shows the same events."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from banyan.client import Client
from banyan.client.discovery import Connection
from testbed import FAST, Cluster, Http, Server, wait_for
from testbed.postgres import Postgres

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path, postgres: Postgres) -> Iterator[Cluster]:
    url = postgres.new_database_sync("e2e")
    the_cluster = Cluster(tmp_path, server=Server(tmp_path, settings=FAST, db_url=url))
    yield the_cluster
    the_cluster.close(grace_s=5)


def test_a_server_on_postgresql_runs_tasks_with_a_real_worker(cluster: Cluster) -> None:
    cluster.start_server()
    assert "database postgresql://" in cluster.server.log_text()
    assert cluster.http.get("/health").status == 200
    cluster.start_worker("pg-w1", cores=2)
    cluster.wait_connected("pg-w1")
    # A parent and two continuations, submitted in one POST, plus a failing task.
    first, second, third, failing = cluster.http.submit(
        [
            {"_id": "a" * 24, "command": "echo parent", "continuations": ["b" * 24, "c" * 24],
             "state": "available"},
            {"_id": "b" * 24, "command": "echo child-b", "state": "available"},
            {"_id": "c" * 24, "command": "echo child-c", "state": "available"},
            {"command": "exit 3", "state": "available"},
        ]
    )  # fmt: skip
    for task_id in (first, second, third, failing):
        cluster.http.wait_state(task_id, "terminated", timeout=30)
    for task_id in (first, second, third):
        assert cluster.http.task(task_id)["execution"]["exit_status"] == "success"
        assert cluster.http.task(task_id)["execution"]["worker"] == "pg-w1"
    assert cluster.http.task(failing)["execution"]["exit_status"] == "failure"
    assert cluster.http.logs(second)["stdout"] == "child-b\n"
    # The continuations ran after their parent.
    history = {t: cluster.http.history(t)[0] for t in (first, second, third)}
    assert history[second]["time_started"] >= history[first]["time_terminated"]
    stats = cluster.http.ok("GET", "/stats")
    assert stats["tasks"]["by_state"]["terminated"] == 4
    assert "pg-w1" in cluster.http.workers()
    # A second server on the same database: it answers for the same queue,
    # a worker connected to it is told of work submitted through the first
    # (LISTEN/NOTIFY), and its feed, followed live, shows the same events.
    other = Server(cluster.tmp, name="second", settings=FAST, db_url=cluster.server.db_url)
    # The same local admin token (a server makes a new one only when its file's is not valid).
    other.client_file.write_text(cluster.server.client_file.read_text())
    other.start()
    try:
        assert cluster.http.task(first)["_etag"] == _get(other, f"/tasks/{first}")["_etag"]
        cluster.start_worker(
            "pg-w2", "--queue", "remote", env={"BANYAN_CLIENT_FILE": str(other.client_file)}
        )
        # Asked of the server it is connected to (what another server's gateway
        # shows of it is the multi-server step's business).
        on_second = Http(other.url, other.token)
        wait_for(
            lambda: on_second.workers().get("pg-w2", {}).get("state") == "idle",
            15,
            "pg-w2 to connect to the second server",
        )
        remote = "d" * 24
        with ThreadPoolExecutor(1) as pool:
            followed = pool.submit(asyncio.run, _feed(other, {remote}))
            cluster.http.submit(
                [{"_id": remote, "command": "echo remote", "queue": "remote", "state": "available"}]
            )
            cluster.http.wait_state(remote, "terminated", timeout=30)
            assert cluster.http.task(remote)["execution"]["worker"] == "pg-w2"
            on_other = followed.result(timeout=30)
        token = other.create_token("worker", "pg-extra")  # the token command on PostgreSQL
        assert Http(cluster.url, token).get("/workers").status == 200
    finally:
        other.stop()

    events = asyncio.run(_feed(cluster.server, {first, second, third, failing, remote}))
    assert events[: len(on_other)] == on_other  # the second server's feed: the same events
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))  # in order, no duplicate
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gap from the start
    states = [(e["data"]["_id"], e["data"]["state"]) for e in events if e["type"] == "task.state"]
    assert (first, "running") in states and (first, "terminated") in states
    assert states.index((first, "terminated")) < states.index((second, "running"))


def _get(server: Server, path: str) -> Any:
    return Http(server.url, server.token).ok("GET", path)


async def _feed(server: Server, tasks: set[str]) -> list[dict[str, Any]]:
    """Every event from the start, read until each of ``tasks`` has terminated."""
    connection = Connection(server=server.url, token=server.token)
    seen: list[dict[str, Any]] = []

    def caught_up() -> bool:
        ended = {
            e["data"]["_id"]
            for e in seen
            if e["type"] == "task.state" and e["data"]["state"] == "terminated"
        }
        return tasks <= ended

    async with Client(connection, timeout_s=5) as client:

        async def follow() -> None:
            async for event in client.events(since=0):
                seen.append(event)

        follower = asyncio.create_task(follow())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not caught_up():
            assert loop.time() < deadline, f"feed stalled after {len(seen)} events"
            await asyncio.sleep(0.05)
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    return seen


def test_servers_with_their_own_client_files_keep_their_own_local_admin(
    tmp_path: Path, postgres: Postgres
) -> None:
    """Servers on separate machines each write their own client file: the
    second must not revoke the first one's local admin token (it did, and then
    could not start: a revoked name is never given again)."""
    url = postgres.new_database_sync("admins")
    a = Server(tmp_path / "a", name="a", settings=FAST, db_url=url)
    b = Server(tmp_path / "b", name="b", settings=FAST, db_url=url)
    for server in (a, b):
        server.tmp.mkdir(parents=True, exist_ok=True)
    a.start()
    try:
        b.start()
        try:
            assert a.token != b.token
            for server in (a, b):  # each token works on both servers
                for other in (a, b):
                    assert Http(other.url, server.token).get("/tasks").status == 200
        finally:
            b.stop(grace_s=5)
    finally:
        a.stop(grace_s=5)
