"""The event hub on a real SQLite store: each commit's events arrive from the
writer, in seq order, once; events another process wrote to the same file
meanwhile are read from the table first, so subscribers see no gap."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from banyan.models import TaskCreate
from banyan.tokens import Caller, Role
from server.hub import EventHub
from server.stores.sqlite.store import SqliteStore

ADMIN = Caller("admin", Role.ADMIN)


async def wait_until_seq(heard: list[dict[str, Any]], seq: int, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not heard or heard[-1]["seq"] < seq:
            await asyncio.sleep(0.01)


async def submit(store: SqliteStore, n: int) -> None:
    await store.create_tasks([TaskCreate(command="true")] * n, ADMIN)


async def test_subscribers_get_every_event_once_including_another_writers(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    store, other = SqliteStore(path), SqliteStore(path)
    await store.open()
    await other.open()
    hub = EventHub(store)
    heard: list[dict[str, Any]] = []
    hub.subscribe(heard.extend)
    try:
        await submit(store, 2)  # before the hub starts: not delivered
        await hub.start()
        start = hub.last_seq
        await submit(store, 3)
        await wait_until_seq(heard, start + 3)
        await submit(other, 4)  # another process: the hub hears nothing of it yet
        await submit(store, 1)  # the next own commit: the gap is read first
        last = await store.last_seq()
        await wait_until_seq(heard, last)
        assert [e["seq"] for e in heard] == list(range(start + 1, last + 1))
        assert heard == await store.events_since(start)
    finally:
        await hub.stop()
        await other.close()
        await store.close()
