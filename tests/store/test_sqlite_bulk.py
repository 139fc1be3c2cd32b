"""What the SQLite backend does to make a bulk submit and the dispatch path
cheap, checked against the plain reading of the tables: new tasks counted per
POST (no insert triggers), ``task.created`` events spliced from one encoding,
and each commit's events handed to a listener exactly as the table holds them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from banyan.events import encode_data
from banyan.models import TaskCreate, TaskPatch
from banyan.tokens import Caller, Role
from server.domain import events as E
from server.stores.sqlite.store import SqliteStore

ADMIN = Caller("admin", Role.ADMIN)


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    the_store = SqliteStore(tmp_path / "store.db")
    await the_store.open()
    yield the_store
    await the_store.close()


def items(*bodies: dict[str, Any], times: int = 1) -> list[TaskCreate]:
    """``times`` copies of each body, sharing one object per body (as the
    view's ``validate_items`` hands them over)."""
    made = [TaskCreate.model_validate(b) for b in bodies]
    return [item for item in made for _ in range(times)]


async def sql(store: SqliteStore, query: str) -> list[tuple[Any, ...]]:
    return await store.db.read(lambda conn: conn.execute(query).fetchall())


async def assert_counts_match_the_tasks(store: SqliteStore) -> None:
    counted = await sql(store, "SELECT queue, state, n FROM task_counts WHERE n > 0 ORDER BY 1, 2")
    actual = await sql(
        store, "SELECT queue, state, count(*) FROM tasks GROUP BY 1, 2 ORDER BY 1, 2"
    )
    assert counted == actual
    by_job = await sql(store, "SELECT job, state, n FROM job_counts WHERE n > 0 ORDER BY 1, 2")
    actual = await sql(store, "SELECT job, state, count(*) FROM tasks GROUP BY 1, 2 ORDER BY 1, 2")
    assert by_job == actual
    totals = await sql(store, "SELECT id, total FROM jobs ORDER BY 1")
    actual = await sql(store, "SELECT job, count(*) FROM tasks GROUP BY 1 ORDER BY 1")
    assert totals == actual


async def test_a_bulk_submit_counts_its_tasks_without_insert_triggers(
    sqlite_store: SqliteStore,
) -> None:
    store = sqlite_store
    triggers = await sql(store, "SELECT name FROM sqlite_master WHERE type = 'trigger'")
    assert not {"task_counts_insert", "job_counts_insert"} & {name for (name,) in triggers}
    first = await store.create_tasks(
        items(
            {"command": "true", "state": "available"},
            {"command": "x", "queue": "q2"},
            {"state": "available"},  # a ready group task: inserted inactive, then terminated
            times=3,
        ),
        ADMIN,
    )
    await store.create_tasks(items({"command": "y", "queue": "q2", "state": "available"}), ADMIN)
    await assert_counts_match_the_tasks(store)
    # The state-change triggers still keep the counts from there on.
    await store.update_task(str(first[0]["_id"]), TaskPatch(state="cancelled"), ADMIN)
    await assert_counts_match_the_tasks(store)


async def test_bulk_created_events_are_what_the_builder_makes(sqlite_store: SqliteStore) -> None:
    store = sqlite_store
    start = await store.last_seq()
    created = await store.create_tasks(
        items({"command": "true", "name": 'ü "quoted"', "priority": 3}, times=3)
        + items({"command": "x", "queue": "other", "state": "available"}),
        ADMIN,
    )
    events = await store.events_since(start)
    assert [e["type"] for e in events] == ["task.created"] * 4
    job = str(created[0]["_id"])
    for event, meta in zip(events, created, strict=True):
        doc = await store.get_task(str(meta["_id"]))
        built = E.task_created(
            doc["_id"],
            name=doc["name"],
            state=doc["state"],
            queue=doc["queue"],
            priority=doc["priority"],
            owner="admin",
            group=False,
            job=job,
        )
        assert event["data"] == json.loads(encode_data(built))


async def test_an_event_listener_gets_each_commit_as_the_table_holds_it(
    sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seqs, times, types and data as ``events_since`` reads them; nothing of
    an operation rolled back to its savepoint, even in a batch that commits."""
    from server.stores.sqlite import graph

    store = sqlite_store
    start = await store.last_seq()
    heard: list[dict[str, Any]] = []
    assert store.add_event_listener(heard.extend)
    child = str((await store.create_tasks(items({"command": "c"}), ADMIN))[0]["_id"])
    parent = (await store.create_tasks(items({"command": "p", "continuations": [child]}), ADMIN))[
        0
    ]["_id"]
    await store.create_tasks(items({"command": "bulk", "state": "available"}, times=5), ADMIN)

    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(graph, "settle", explode)  # the cancel's cascade fails after its event
    failing = store.update_task(str(parent), TaskPatch(state="cancelled"), ADMIN)
    outcome = await asyncio.gather(
        failing, store.create_tasks(items({"command": "beside"}), ADMIN), return_exceptions=True
    )
    monkeypatch.undo()
    assert isinstance(outcome[0], RuntimeError) and not isinstance(outcome[1], BaseException)
    stored = await store.events_since(start)
    assert heard == stored
    assert [e["seq"] for e in heard] == list(range(start + 1, start + 1 + len(heard)))
    assert all(e["data"].get("state") != "cancelled" for e in heard)
