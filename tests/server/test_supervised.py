"""Every background loop of the server runs as a supervised side task
(``banyan.supervise.SideTasks``): a failure is logged and stops the server
with exit 70, never a silently dead loop (issue 10)."""

from __future__ import annotations

import asyncio

from tests.conftest import Api


async def test_the_servers_loops_are_supervised(api: Api) -> None:
    assert (await api.get("/health", as_=None)).status == 200  # the app has started
    names = {task.get_name() for task in asyncio.all_tasks()}
    expected = {
        "server: event-hub",
        "server: prune-events",
        "server: prune-workers",
        "server: database-watch",
        "gateway: worker-monitor",
    }
    assert expected <= names, sorted(names)
