"""Failover across several servers (issue 14), with real processes: a
server ``kill -9``ed, and a standby started on the same SQLite file at
another port (``Server.standby``), as an operator would on one machine.

The clients are given both URLs (``--server A --server B``): the CLI, the
client library and its event feed, the TUI's data source and the worker move
to the standby when the first cannot be reached, and go on there.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from banyan.client import Client
from banyan.client.discovery import Connection
from banyan.client.http import Transport
from banyan.errors import ServerUnreachable
from testbed import BIN, FAST, Cluster, Http, Server, clean_env, free_port, wait_for
from tests.e2e.test_feed_restart import wait_until

pytestmark = pytest.mark.slow
BANYAN = BIN / "banyan"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """Server A (started) and its standby B on the same database (not started)."""
    first = Server(tmp_path, name="a", settings=FAST)
    second = first.standby(name="b")
    first.start()
    yield first, second
    for server in (first, second):
        server.stop(grace_s=0)


def dead_url() -> str:
    """A loopback URL nothing listens on: connections to it are refused."""
    return f"http://127.0.0.1:{free_port()}"


def banyan(
    server: Server, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real ``banyan`` command, finding the token in the servers' client file."""
    full_env = clean_env(BANYAN_CLIENT_FILE=str(server.client_file), **(env or {}))
    return subprocess.run(
        [str(BANYAN), *argv], capture_output=True, text=True, env=full_env, timeout=60, check=False
    )


def test_cli_goes_on_to_the_next_server(pair: tuple[Server, Server]) -> None:
    live, _ = pair
    listed = banyan(live, "--server", dead_url(), "--server", live.url, "ls", "--json")
    assert listed.returncode == 0, listed
    assert listed.stdout.strip() == "[]"
    # The list in the environment, and a submit: created once, on the live one.
    env = {"BANYAN_SERVER": f"{dead_url()},{live.url}"}
    created = banyan(live, "submit", "--hold", "--", "true", env=env)
    assert created.returncode == 0, created
    found = banyan(live, "--server", live.url, "ls", "--json", "--all")
    assert [t["_id"] for t in json.loads(found.stdout)] == [created.stdout.strip()]


def test_cli_names_every_server_when_none_answers(pair: tuple[Server, Server]) -> None:
    live, _ = pair
    first, second = dead_url(), dead_url()
    result = banyan(live, "--server", first, "--server", second, "ls")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("banyan: cannot reach any of 2 Banyan servers:")
    assert first in line and second in line


@pytest.mark.parametrize(
    ("command", "servers"),
    [
        ("banyan", ["--server", ""]),
        ("banyan", ["--server", "http://127.0.0.1:1,,http://127.0.0.1:2"]),
        ("banyan-worker", ["--server", "http://127.0.0.1:1", "--server", "ftp://x"]),
        ("banyan-worker", ["--server", "127.0.0.1:port"]),
        ("banyan-tui", ["--server", "http://127.0.0.1:1,"]),
    ],
)
def test_an_empty_or_malformed_url_is_one_line_and_exit_2(
    tmp_path: Path, command: str, servers: list[str]
) -> None:
    argv = [str(BIN / command), *servers]
    if command == "banyan":
        argv.append("ls")
    env = clean_env(BANYAN_TOKEN="byn_unused", BANYAN_CLIENT_FILE=str(tmp_path / "none.json"))
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 2, done
    [line] = done.stderr.splitlines()
    assert "server URL" in line and "--server" in line, line


async def test_feed_resumes_on_the_standby_with_no_gap(pair: tuple[Server, Server]) -> None:
    first, standby = pair
    connection = Connection(server=first.url, token=first.token, fallbacks=(standby.url,))
    seen: list[dict[str, Any]] = []
    submitted: list[str] = []

    async def follow(client: Client) -> None:
        async for event in client.events(since=0, types=["task.created"]):
            seen.append(event)

    # The follower has a client of its own: its switch is its own, not the submitter's.
    async with Client(connection, timeout_s=5) as follower_client:
        follower = asyncio.create_task(follow(follower_client))
        async with Client(connection, timeout_s=5) as submitter:
            for i in range(5):
                submitted.append((await submitter.submit({"name": f"on A {i}"}))["_id"])
            await wait_until(lambda: len(seen) >= 5)
            first.kill()
            standby.start()
            for i in range(5):
                submitted.append((await submitter.submit({"name": f"on B {i}"}))["_id"])
            assert submitter.connection.server == standby.url
        await wait_until(lambda: len(seen) >= 10)
        assert follower_client.connection.server == standby.url
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    seqs = [e["seq"] for e in seen]
    assert [e["data"]["_id"] for e in seen] == submitted  # each once, in order
    assert seqs == list(range(seqs[0], seqs[0] + 10))  # no gap (only task.created happened)


@pytest.mark.parametrize("transport", ["aiohttp", "stdlib"])
async def test_a_change_that_may_have_arrived_is_not_sent_to_another_server(
    pair: tuple[Server, Server], transport: Transport
) -> None:
    """A first "server" that reads the request and hangs up without an answer:
    the PATCH may have been applied there, so it is not sent again to the next
    server (the error says so); a GET, harmless twice, goes on to it."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.close()

    live, _ = pair
    [task_id] = Http(live.url, live.token).submit([{"command": "true"}])  # inactive
    listener = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    silent = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    connection = Connection(server=silent, token=live.token, fallbacks=(live.url,))
    try:
        async with Client(connection, timeout_s=5, transport=transport) as client:
            with pytest.raises(ServerUnreachable, match=silent):
                await client.update(task_id, {"priority": 5})
            assert client.connection.server == silent  # not sent to the live one
            task = await client.task(task_id)
            assert client.connection.server == live.url
            assert task["priority"] == 0
    finally:
        listener.close()
        await listener.wait_closed()


async def test_tui_source_switches_to_the_next_server(pair: tuple[Server, Server]) -> None:
    from tui.source import LiveSource

    live, _ = pair
    dead = dead_url()
    connection = Connection(server=dead, token=live.token, fallbacks=(live.url,))
    async with LiveSource(connection, timeout_s=5) as source:
        assert source.server == dead
        with pytest.raises(ServerUnreachable):
            async for _ in source.events(0):
                pass
        assert source.server == live.url  # the app's next reconnect goes there
        frames = source.events(0)
        hello = await anext(frames)
        await frames.aclose()  # type: ignore[attr-defined]
        assert hello["type"] == "feed.hello"
        snapshot = await source.snapshot()
        assert snapshot.tasks == []


@pytest.mark.parametrize("ends", ["on the standby", "while no server is up"])
def test_worker_fails_over_and_its_task_goes_on(tmp_path: Path, ends: str) -> None:
    """A's ``kill -9`` mid-task; B started on A's database: the worker
    re-attaches to B within its lease, the task it runs goes on (it is not
    started again) and B accepts its result, whether the task ends once the
    worker is on B or while it is between servers (its report waits)."""
    # A lease long enough for a standby to start on a busy machine.
    settings = {**FAST, "worker_timeout_s": 15, "server_timeout_s": 30}
    with Cluster(tmp_path, name="a", settings=settings) as cluster:
        standby = cluster.server.standby(name="b")
        try:
            cluster.start_server()
            starts, go, ended = tmp_path / "starts", tmp_path / "go", tmp_path / "ended"
            command = (
                f"echo run >> {starts}; while [ ! -e {go} ]; do sleep 0.1; done; "
                f"echo done; touch {ended}"
            )
            worker = cluster.start_worker("w1", "--server", cluster.url, "--server", standby.url)
            cluster.wait_connected("w1")
            # A second worker, of B only: it would run the task if B put it back in the queue.
            cluster.start_worker("w2", "--server", standby.url)
            [task_id] = cluster.http.submit([{"command": command, "state": "available"}])
            wait_for(starts.exists, 20, "the task to start")
            cluster.kill_server()
            if ends == "while no server is up":
                go.touch()
                wait_for(ended.exists, 20, "the task to end")
            standby.start()
            on_b = Http(standby.url, cluster.token)

            def reattached() -> bool:
                assert worker.popen.poll() is None, worker.log_text()
                return bool(on_b.workers().get("w1", {}).get("state") in ("busy", "idle"))

            wait_for(reattached, 30, "w1 to re-attach to the standby")
            go.touch()
            task = on_b.wait_state(task_id, "terminated", timeout=30)
            assert task["execution"]["exit_status"] == "success"
            assert task["execution"]["worker"] == "w1"
            assert task["retry_count"] == 0
            [attempt] = on_b.history(task_id)  # one attempt: it was never rerun
            assert attempt["exit_status"] == "success"
            assert starts.read_text().split() == ["run"]  # started once
            if ends == "on the standby":  # output sent while no server is up is not kept
                assert on_b.logs(task_id)["stdout"].split() == ["done"]
            assert f"connected to {standby.url}" in worker.log_text(20_000)
            assert worker.popen.poll() is None  # and it goes on serving B
        finally:
            standby.stop(grace_s=0)
