"""``banyan-server`` as a real process: zero-config start, restart, SIGTERM,
and ``kill -9`` in the middle of a burst of submissions losing nothing that
was acknowledged."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from banyan.tokens import basic_auth_header
from testbed import Server

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
