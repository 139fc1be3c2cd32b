"""The server forgets departed workers after ``worker_retention_s`` (its
background loop, ``server.retention``), and only those."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from banyan.tokens import Role, basic_auth_header
from server.app import create_app
from server.keys import STORE
from server.retention import MAX_PERIOD_S, period_for
from server.settings import Settings


def test_the_loop_looks_at_least_twice_per_retention() -> None:
    assert period_for(7 * 86400) == MAX_PERIOD_S
    assert period_for(0.5) == 0.25


async def test_departed_workers_are_forgotten_after_the_retention(
    aiohttp_client: Callable[..., Any], settings: Settings
) -> None:
    app = create_app(settings.model_copy(update={"worker_retention_s": 0.2}))
    client = await aiohttp_client(app)
    store = app[STORE]
    auth = {"Authorization": basic_auth_header(await store.create_token("root", Role.ADMIN))}
    for name in ("gone", "here"):
        await store.join_worker(
            name=name, token="t", capacity={"cores": 1}, queues=["default"], host="h", pid=1,
            held=[],
        )  # fmt: skip
    await store.leave_worker("gone", lost=True)

    async def status(name: str) -> int:
        async with client.get(f"/workers/{name}", headers=auth) as resp:
            return resp.status

    for _ in range(200):  # bounded: 200 polls of 50 ms
        if await status("gone") == 404:
            break
        await asyncio.sleep(0.05)
    assert await status("gone") == 404
    assert await status("here") == 200  # still connected: never pruned
