"""``banyan-server`` as a real process: zero-config start, restart, SIGTERM,
and ``kill -9`` in the middle of a burst of submissions losing nothing that
was acknowledged."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from banyan.tokens import basic_auth_header

pytestmark = pytest.mark.slow
SERVER = Path(sys.executable).parent / "banyan-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_file = tmp / "client.json"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "BANYAN_CLIENT_FILE": str(self.client_file)}
        self.log = self.tmp / "server.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(SERVER), "--db", str(self.tmp / "b.db"), "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    if self.client_file.exists():
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("server did not start")

    @property
    def token(self) -> str:
        return str(json.loads(self.client_file.read_text())["token"])

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=20)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path)
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait()


def test_zero_config_client_file_and_restart(server: ServerProcess) -> None:
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


async def test_kill_9_loses_nothing_acknowledged(server: ServerProcess) -> None:
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
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGKILL)
        await asyncio.gather(*workers)
    server.proc.wait()
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
