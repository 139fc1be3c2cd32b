"""The event feed across a server ``kill -9`` and restart: a client that
follows it with ``banyan.client`` (which reconnects with ``since``) sees every
event once, in order, with no gap."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from banyan.client import Client
from banyan.client.discovery import Connection
from testbed import Server
from tests.e2e.test_server_process import server  # noqa: F401

pytestmark = pytest.mark.slow


async def test_follow_across_a_server_restart(server: Server) -> None:  # noqa: F811
    server.start()
    connection = Connection(server=server.url, token=server.token)
    seen: list[dict[str, Any]] = []
    submitted: list[str] = []

    async def follow(client: Client) -> None:
        async for event in client.events(since=0, types=["task.created"]):
            seen.append(event)

    async with Client(connection, timeout_s=5) as client:
        follower = asyncio.create_task(follow(client))
        for i in range(10):
            submitted.append((await client.submit({"name": f"before {i}"}))["_id"])
        await wait_until(lambda: len(seen) >= 10)
        os.kill(server.popen.pid, signal.SIGKILL)
        server.popen.wait()
        server.start()
        # A fresh session for the submissions: the old one's pooled connection died with
        # the server. The follower keeps its client: its reconnect is what is tested.
        async with Client(connection, timeout_s=5) as submitter:
            for i in range(10):
                submitted.append((await submitter.submit({"name": f"after {i}"}))["_id"])
        await wait_until(lambda: len(seen) >= 20)
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    seqs = [e["seq"] for e in seen]
    assert seqs == sorted(set(seqs))  # in order, no duplicate
    assert [e["data"]["_id"] for e in seen] == submitted  # nothing missed
    assert seqs == list(range(seqs[0], seqs[0] + 20))  # no gap (only task.created happened)


async def wait_until(condition: Any, timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)
