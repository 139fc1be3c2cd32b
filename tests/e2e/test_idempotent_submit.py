"""Idempotent submit across a server ``kill -9`` (issue 11), with a real
``banyan-server`` process and the real ``banyan.client``.

The worst moment for a client is a server that committed the tasks and died
before its answer left: the client sees a reset connection and cannot tell
whether anything was made. A loopback relay between the two arranges exactly
that: it passes the POST on, and when the server's answer starts to arrive
(the answer is written after the commit) it ``kill -9``s the server, resets
the client's connection instead of relaying, and restarts the server on the
same database and port. ``Client.submit`` retries with its key and gets the
original answer: one task, never a twin.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from banyan.client.discovery import Connection
from banyan.client.http import Client
from testbed import Cluster

pytestmark = pytest.mark.slow
CHUNK = 65536


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path)
    yield the_cluster
    the_cluster.close()
    print(f"----- server -----\n{the_cluster.server.log_text()[-4000:]}")


class KillOnAnswer:
    """A relay to the server that kills it the first time an answer arrives."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.fired = asyncio.Event()
        self.restarted: asyncio.Task[None] | None = None
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        if self.restarted is not None:
            await self.restarted

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.cluster.port)
        except OSError:  # the server is down: the client sees a reset and retries
            writer.transport.abort()
            return
        task = asyncio.create_task(_pump(reader, up_writer))
        self._tasks.add(task)
        try:
            first = await up_reader.read(CHUNK)
            if first and not self.fired.is_set():
                self.fired.set()
                self.cluster.kill_server()  # the tasks are committed; the answer is lost
                writer.transport.abort()
                self.restarted = asyncio.create_task(asyncio.to_thread(self.cluster.restart_server))
                return
            while first:
                writer.write(first)
                await writer.drain()
                first = await up_reader.read(CHUNK)
        except OSError:
            pass
        finally:
            up_writer.close()
            writer.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()


def tasks_named(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    return cluster.http.find_all({"name": name}, {"name": 1})


@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
async def test_a_submit_whose_answer_died_with_the_server_makes_its_tasks_once(
    cluster: Cluster, bulk: bool
) -> None:
    await asyncio.to_thread(cluster.start_server)
    relay = KillOnAnswer(cluster)
    await relay.start()
    connection = Connection(server=f"http://127.0.0.1:{relay.port}", token=cluster.token)
    body: Any = [{"command": "true", "name": "twin?"}] * 3 if bulk else {
        "command": "true", "name": "twin?"}  # fmt: skip
    try:
        async with Client(connection, retry_first_s=0.1) as client:
            answer = await client.submit(body)
        assert relay.fired.is_set()  # the first answer was lost with the server
    finally:
        await relay.close()
    ids = [item["_id"] for item in answer["_items"]] if bulk else [answer["_id"]]
    found = await asyncio.to_thread(tasks_named, cluster, "twin?")
    assert sorted(t["_id"] for t in found) == sorted(ids)
    assert len(found) == (3 if bulk else 1)


def test_an_acknowledged_key_survives_a_kill_and_replays_the_same_answer(
    cluster: Cluster,
) -> None:
    cluster.start_server()
    body = json.dumps([{"command": "true", "name": "once"}] * 2).encode()

    def post() -> tuple[int, Any, str | None]:
        request = urllib.request.Request(
            f"{cluster.url}/tasks",
            data=body,
            method="POST",
            headers={
                "Authorization": f"Bearer {cluster.token}",
                "Content-Type": "application/json",
                "Idempotency-Key": "after-the-kill",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read()), resp.headers.get("Idempotent-Replayed")

    first = post()
    cluster.kill_server()
    cluster.restart_server()
    again = post()
    assert first[:2] == again[:2] and first[2] is None and again[2] == "true"
    assert len(tasks_named(cluster, "once")) == 2
