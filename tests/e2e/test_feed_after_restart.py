"""A feed subscriber that connects to a freshly restarted server, before any
new event, with ``?since=`` older than the head gets the events it missed
at once (the ring, empty after a start, sends it to the store; it once
answered "nothing after 0" until the next event)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from banyan.client import Client
from banyan.client.discovery import Connection
from testbed import FAST, Http, Server

pytestmark = pytest.mark.slow


async def _first(server: Server, *, since: int, count: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    async with Client(Connection(server=server.url, token=server.token), timeout_s=5) as client:

        async def follow() -> None:
            async for event in client.events(since=since):
                seen.append(event)
                if len(seen) == count:
                    return

        await asyncio.wait_for(follow(), timeout=20)
    return seen


def test_a_restarted_server_replays_old_events_before_any_new_one(tmp_path: Path) -> None:
    server = Server(tmp_path, settings=FAST)
    server.start()
    try:
        Http(server.url, server.token).submit([{"command": "true"} for _ in range(3)])
        before = asyncio.run(_first(server, since=0, count=3))
        server.stop()
        server.start()
        after = asyncio.run(_first(server, since=0, count=3))
        assert after == before
        assert [e["seq"] for e in asyncio.run(_first(server, since=1, count=2))] == [2, 3]
    finally:
        server.stop()
