"""Idempotent submit across a server ``kill -9`` (issue 11), with a real
``banyan-server`` process and the real ``banyan.client``.

The worst moment for a client is a server that committed the tasks and died
before its answer left: the client sees a reset connection and cannot tell
whether anything was made. A loopback relay between the two
(``tests.faults.relay``) arranges exactly that: when the server's answer
starts to arrive (it is written after the commit) it ``kill -9``s the server,
resets the client's connection instead of relaying, and restarts the server
on the same database and port. ``Client.submit`` retries with its key and gets the
original answer: one task, never a twin.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from banyan.client.discovery import Connection
from banyan.client.http import Client
from testbed import Cluster
from tests.faults.relay import KillRelay

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path)
    yield the_cluster
    the_cluster.close()
    print(f"----- server -----\n{the_cluster.server.log_text()[-4000:]}")


def tasks_named(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    return cluster.http.find_all({"name": name}, {"name": 1})


@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
async def test_a_submit_whose_answer_died_with_the_server_makes_its_tasks_once(
    cluster: Cluster, bulk: bool
) -> None:
    await asyncio.to_thread(cluster.start_server)
    relay = KillRelay(cluster)
    await relay.start()
    relay.arm()
    connection = Connection(server=relay.url, token=cluster.token)
    body: Any = [{"command": "true", "name": "twin?"}] * 3 if bulk else {
        "command": "true", "name": "twin?"}  # fmt: skip
    try:
        async with Client(connection, retry_first_s=0.1) as client:
            answer = await client.submit(body)
        assert relay.kills == 1  # the first answer was lost with the server
        await relay.wait_restarted()
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
