"""Several servers on one PostgreSQL database (``server.stores.cluster``),
at the store: each store object below is one server process (its own pool
and ``server_id``) on the same database. A worker is declared lost once, by
one server, and never while the live server it is connected to holds it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from banyan.models import TaskCreate
from banyan.resources import Resources
from banyan.states import State
from banyan.tokens import Caller, Role
from server.settings import Settings
from server.stores import open_store
from server.stores.cluster import SessionMark, SharedStore
from server.stores.postgres.store import PostgresStore
from testbed.postgres import Postgres

ADMIN = Caller("admin", Role.ADMIN)
TIMEOUT_S = 5.0
LATER = 60.0  # "now" passed to declare_lost: every last heard time is older than the timeout

Servers = Callable[[int], Coroutine[Any, Any, list[PostgresStore]]]


@pytest.fixture
async def servers(postgres: Postgres) -> AsyncIterator[Servers]:
    url = await postgres.new_database("cluster")
    opened: list[PostgresStore] = []

    async def make(count: int) -> list[PostgresStore]:
        made = []
        for _ in range(count):
            store = open_store(Settings.load(db=url))
            assert isinstance(store, PostgresStore)
            await store.open()
            opened.append(store)
            made.append(store)
        return made

    yield make
    for store in opened:
        await store.close()


async def join(store: PostgresStore, name: str) -> None:
    await store.join_worker(
        name=name,
        token=name,
        capacity=Resources(cores=1).canonical(),
        queues=["default"],
        host="h",
        pid=1,
        held=[],
        secret="s",
    )


async def lost_events(store: PostgresStore) -> list[str]:
    return [e["data"]["name"] for e in await store.events_since(0) if e["type"] == "worker.lost"]


async def test_the_store_is_shared_and_each_process_has_its_own_id(servers: Servers) -> None:
    a, b = await servers(2)
    assert isinstance(a, SharedStore)
    assert a.server_id != b.server_id


async def test_a_live_servers_workers_are_its_own_to_declare_lost(servers: Servers) -> None:
    a, b = await servers(2)
    await a.beat({})
    await join(a, "w1")
    assert await a.beat({"w1": SessionMark(draining=True, deadline=123.0)}) == set()
    # B sees A's worker as connected to a live server, with A's marks.
    (remote,) = (await b.connected_elsewhere(alive_s=TIMEOUT_S)).values()
    assert (remote.name, remote.server, remote.draining, remote.deadline) == (
        "w1",
        a.server_id,
        True,
        123.0,
    )
    assert await a.connected_elsewhere(alive_s=TIMEOUT_S) == {}
    # Long silent or not, B may not declare it lost while A is alive, even named.
    later = time.time() + LATER
    assert await b.declare_lost(silent=["w1"], worker_timeout_s=TIMEOUT_S, now=later) == []
    # A may: it found the worker silent.
    (lost,) = await a.declare_lost(silent=["w1"], worker_timeout_s=TIMEOUT_S, now=time.time())
    assert lost.name == "w1"
    assert await lost_events(b) == ["w1"]
    assert (await b.list_workers("w1"))[0]["state"] == "lost"


async def test_a_dead_servers_silent_workers_are_taken_over_with_their_attempts(
    servers: Servers,
) -> None:
    a, b = await servers(2)
    await a.beat({})
    await b.beat({})
    await join(a, "w1")
    (task,) = await a.create_tasks(
        [TaskCreate.model_validate({"command": "true", "state": "available"})], ADMIN
    )
    (attempt,) = await a.claim(
        worker="w1", token="w1", free=Resources(cores=1), queues=["default"], limit=1
    )
    # Not yet silent for the timeout: nothing, even once A is gone.
    await a.retire()
    assert await b.declare_lost(silent=[], worker_timeout_s=TIMEOUT_S, now=time.time()) == []
    assert await b.connected_elsewhere(alive_s=TIMEOUT_S) == {}  # A is not alive
    (lost,) = await b.declare_lost(silent=[], worker_timeout_s=TIMEOUT_S, now=time.time() + LATER)
    assert (lost.name, lost.abandoned) == ("w1", [attempt["task"]])
    doc = await b.get_task(task["_id"])
    assert doc["state"] == State.AVAILABLE  # abandoned: the retry rule put it back
    assert (
        await b.declare_lost(silent=[], worker_timeout_s=TIMEOUT_S, now=time.time() + LATER) == []
    )


async def test_a_worker_that_joined_another_server_is_not_lost_by_the_first(
    servers: Servers,
) -> None:
    a, b = await servers(2)
    await a.beat({})
    await b.beat({})
    await join(a, "w1")
    await join(b, "w1")  # it reconnected through B
    # A still had it (a half-dead socket): A learns it is no longer its own…
    assert await a.beat({"w1": SessionMark()}) == {"w1"}
    # …and its silence on A is no loss.
    assert await a.declare_lost(silent=["w1"], worker_timeout_s=TIMEOUT_S, now=time.time()) == []
    assert (await a.list_workers("w1"))[0]["state"] == "connected"
    assert await b.beat({"w1": SessionMark()}) == set()


async def test_servers_sweeping_at_once_declare_each_worker_lost_exactly_once(
    servers: Servers,
) -> None:
    dead, *sweepers = await servers(5)
    await dead.beat({})
    names = [f"w{i:02d}" for i in range(60)]
    for name in names:
        await join(dead, name)
    await dead.retire()
    later = time.time() + LATER
    results = await asyncio.gather(
        *(
            s.declare_lost(silent=names, worker_timeout_s=TIMEOUT_S, now=later)
            for s in sweepers
            for _ in range(3)
        )
    )
    declared = [lost.name for result in results for lost in result]
    assert sorted(declared) == names  # every one, each by exactly one call
    assert sorted(await lost_events(dead)) == names
    for worker in await dead.list_workers():
        assert worker["state"] == "lost"


async def test_a_retired_servers_workers_wait_for_their_own_silence(servers: Servers) -> None:
    a, b = await servers(2)
    await a.beat({})
    await join(a, "w1")
    await a.beat({"w1": SessionMark()})
    await a.touch_workers({"w1": time.time() + 30})  # heard from a moment ago (as stored)
    await a.retire()
    assert await b.declare_lost(silent=[], worker_timeout_s=TIMEOUT_S, now=time.time()) == []
    (lost,) = await b.declare_lost(silent=[], worker_timeout_s=TIMEOUT_S, now=time.time() + LATER)
    assert lost.name == "w1"


async def test_a_server_is_taken_for_stopped_once_its_beat_is_older_than_the_silence(
    servers: Servers,
) -> None:
    a, b = await servers(2)
    await a.beat({})
    await join(a, "w1")
    later = time.time() + LATER
    # Beaten a moment ago: alive for a silence of a minute…
    assert await b.declare_lost(silent=[], worker_timeout_s=1, now=later, server_silence_s=60) == []
    # …but not for one of no time at all.
    (lost,) = await b.declare_lost(silent=[], worker_timeout_s=1, now=later, server_silence_s=0)
    assert lost.name == "w1"
