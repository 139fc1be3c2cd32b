"""What only the SQLite backend can be asked: a failure injected inside its
write transaction rolls back alone, and its files are owner-only."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from banyan.models import TaskCreate, TaskPatch
from banyan.tokens import Caller, Role
from server.stores.sqlite.store import SqliteStore

ADMIN = Caller("admin", Role.ADMIN)


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    the_store = SqliteStore(tmp_path / "store.db")
    await the_store.open()
    yield the_store
    await the_store.close()


async def new(store: SqliteStore, **fields: Any) -> str:
    (meta,) = await store.create_tasks([TaskCreate.model_validate(fields)], ADMIN)
    return str(meta["_id"])


async def state(store: SqliteStore, task_id: str) -> str:
    return str((await store.get_task(task_id))["state"])


async def patch(store: SqliteStore, task_id: str, **changes: Any) -> None:
    await store.update_task(task_id, TaskPatch.model_validate(changes), ADMIN)


async def test_failed_operation_leaves_nothing_behind(
    sqlite_store: SqliteStore, monkeypatch: Any
) -> None:
    """An exception in the middle of a transition rolls back that operation
    alone, holds no lock, and the next request succeeds."""
    from server.stores.sqlite import graph

    store = sqlite_store
    child = await new(store, command="c")
    parent = await new(store, command="p", continuations=[child], state="available")
    before = await store.last_seq()

    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(graph, "settle", explode)
    with pytest.raises(RuntimeError, match="injected"):
        await patch(store, parent, state="cancelled")
    monkeypatch.undo()
    assert await state(store, parent) == "available"
    assert await store.last_seq() == before
    await patch(store, parent, state="cancelled")
    assert await state(store, child) == "cancelled"


async def test_a_new_database_and_its_wal_are_owner_only(tmp_path: Path) -> None:
    """Task commands, environments and logs are private, whatever the umask."""
    old = os.umask(0o022)
    try:
        path = tmp_path / "fresh" / "banyan.db"
        store = SqliteStore(path)
        await store.open()
        try:
            await store.create_token("alice", Role.PROVIDER)  # a write: the WAL exists
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
        finally:
            await store.close()
    finally:
        os.umask(old)
    assert modes["banyan.db"] == 0o600
    assert all(mode == 0o600 for mode in modes.values()), modes
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_newest_first_listing_reads_the_creation_index(sqlite_store: SqliteStore) -> None:
    """``GET /tasks?sort=-_created,-_id&max_results=25`` (the CLI's and TUI's
    order) walks ``tasks_created`` backwards: no scan and sort of every task."""
    from server.stores.base import Query
    from server.stores.sqlite.rows import TASK_COLUMNS
    from server.stores.sqlite.sqlquery import TASK_QUERY_COLUMNS, page_sql

    query = Query(sort=(("_created", -1), ("_id", -1)), max_results=25)
    select, _, params = page_sql(query, TASK_QUERY_COLUMNS, table="tasks", columns=TASK_COLUMNS)

    def plan(conn: Any) -> str:
        rows = conn.execute("EXPLAIN QUERY PLAN " + select, params).fetchall()
        return " | ".join(r[3] for r in rows)

    found = await sqlite_store.db.read(plan)
    assert "tasks_created" in found and "TEMP B-TREE" not in found, found
