"""``banyan-server`` as a real process: zero-config start, restart, SIGTERM,
``kill -9`` in the middle of a burst of submissions losing nothing that
was acknowledged, and ``--port 0`` announcing the port it bound."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from banyan.tokens import basic_auth_header
from testbed import SERVER, Http, Server, clean_env, wait_for
from testbed.procs import launch

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    process = Server(tmp_path)
    yield process
    process.stop(grace_s=0)


def test_zero_config_client_file_and_restart(server: Server) -> None:
    server.start()
    mode = stat.S_IMODE(server.client_file.stat().st_mode)
    assert mode == 0o600
    data = json.loads(server.client_file.read_text())
    assert data["server"] == server.url
    first_token = data["token"]
    assert server.signal(signal.SIGTERM) == 0
    # A clean shutdown checkpoints the WAL into the database file.
    wal = server.tmp / "b.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    server.start()
    assert server.token == first_token  # the same local admin token is reused


async def test_kill_9_loses_nothing_acknowledged(server: Server) -> None:
    server.start()
    headers = {"Authorization": basic_auth_header(server.token)}
    acknowledged: list[str] = []

    async def submitter(session: aiohttp.ClientSession, n: int) -> None:
        for i in range(200):  # bounded; the kill ends it sooner
            try:
                async with session.post(
                    f"{server.url}/tasks", json={"name": f"w{n}-{i}", "command": "true"}
                ) as resp:
                    if resp.status == 201:
                        acknowledged.append((await resp.json())["_id"])
            except (TimeoutError, aiohttp.ClientError):
                return

    async with aiohttp.ClientSession(headers=headers) as session:
        workers = [asyncio.create_task(submitter(session, n)) for n in range(16)]
        while len(acknowledged) < 300:
            await asyncio.sleep(0.01)
        os.kill(server.popen.pid, signal.SIGKILL)
        await asyncio.gather(*workers)
    server.popen.wait()
    server.start()
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(f"{server.url}/tasks", params={"max_results": "1"}) as resp:
            total = (await resp.json())["_meta"]["total"]
        missing = []
        for task_id in acknowledged:
            async with session.get(f"{server.url}/tasks/{task_id}") as resp:
                if resp.status != 200:
                    missing.append(task_id)
    assert missing == []
    assert total >= len(acknowledged)


def test_a_lost_client_file_gets_a_new_local_admin_and_the_old_one_is_revoked(
    server: Server,
) -> None:
    """A revoked token's name is never given again: each new local admin token
    has a name of its own, and the one it replaces stops working (whoever
    copied the old file loses it). This used to stop the server from starting."""
    server.start()
    first = json.loads(server.client_file.read_text())
    assert first["token_name"].startswith("local-admin@")
    assert server.signal(signal.SIGTERM) == 0
    server.client_file.unlink()
    server.start()
    second = json.loads(server.client_file.read_text())
    assert second["token"] != first["token"]
    assert second["token_name"] == first["token_name"] + "-2"
    old = Http(server.url, first["token"])
    assert old.get("/tasks").status == 401
    assert Http(server.url, second["token"]).get("/tasks").status == 200
    listing = subprocess.run(
        [str(SERVER), "token", "list", "--db", str(server.db)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=True,
    ).stdout
    status = {line.split("\t")[0]: line.split("\t")[-1] for line in listing.splitlines()[1:]}
    assert status[first["token_name"]] == "revoked" and status[second["token_name"]] == "active"


def test_port_0_announces_the_port_it_bound(tmp_path: Path) -> None:
    """``--port 0``: the banner, the log line, the client file and the
    database's serving lock (named when a second server is refused) all say
    the port the kernel picked, and the client file's URL answers."""
    client_file = tmp_path / "client.json"
    env = clean_env(BANYAN_CLIENT_FILE=str(client_file), BANYAN_CONFIG=str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").touch()
    argv = [str(SERVER), "--port", "0", "--db", str(tmp_path / "b.db"), "--log-format", "json"]
    proc = launch(argv, log=tmp_path / "server.log", env=env, cwd=tmp_path, name="server")
    try:
        banner = wait_for(
            lambda: [line for line in proc.log_text(10**5).splitlines() if "listening on" in line],
            30,
            "the banner",
        )
        saved = json.loads(client_file.read_text())
        url = saved["server"]
        host, _, port = url.removeprefix("http://").rpartition(":")
        assert host == "127.0.0.1" and int(port) > 0, url
        assert Http(url, saved["token"]).ok("GET", "/workers")["_items"] == []
        printed, logged = sorted(banner, key=lambda line: line.startswith("{"))
        assert printed.startswith(f"banyan-server listening on {url} ("), printed
        assert json.loads(logged)["address"] == url
        second = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path, check=False
        )
        assert second.returncode == 2, second
        assert f"(pid {proc.pid}, {url})" in second.stderr, second.stderr
    finally:
        proc.stop(grace_s=10)
