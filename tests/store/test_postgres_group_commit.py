"""The PostgreSQL store's group commit without a savepoint per write: writes
queued together share one transaction; one refused before it changed
anything fails alone, and one that fails after changing rows makes the batch
run again with savepoints, so it is undone alone and the others commit once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from banyan.errors import Conflict, NotFound
from banyan.models import TaskCreate
from banyan.tokens import Caller, Role
from server.stores.postgres.db import Tx
from server.stores.postgres.store import PostgresStore
from testbed.postgres import Postgres

ADMIN = Caller("admin", Role.ADMIN)
INSERT_JOB = "INSERT INTO jobs (id, name, owner, created) VALUES ($1, NULL, 'test', 0)"
JOBS = "SELECT id FROM jobs ORDER BY id"


@pytest.fixture
async def store(postgres: Postgres) -> AsyncIterator[PostgresStore]:
    the_store = PostgresStore(await postgres.new_database("gc"), pool_size=4)
    await the_store.open()
    yield the_store
    await the_store.close()


Op = Callable[[Tx], Awaitable[str]]


def insert(job: str, *, then_fail: bool = False) -> Op:
    async def op(tx: Tx) -> str:
        await tx.execute(INSERT_JOB, job)
        if then_fail:
            raise Conflict(f"{job} changed a row, then was refused")
        return job

    return op


async def refused(tx: Tx) -> str:
    await tx.fetch(JOBS)  # a read only
    raise NotFound("refused before any change")


async def run_together(store: PostgresStore, *ops: Op) -> list[str | BaseException]:
    """The ops queued at once (so they share one batch), their outcomes in order."""
    batches = store.db.batches
    outcomes = await asyncio.gather(
        *(store.db.write(op) for op in ops),
        return_exceptions=True,
    )
    assert store.db.batches == batches + 1  # one transaction for all of them
    return list(outcomes)


async def jobs(store: PostgresStore) -> list[str]:
    return [j for (j,) in await store.db.read(lambda tx: tx.fetch(JOBS))]


async def test_a_write_refused_before_changing_anything_fails_alone(
    store: PostgresStore,
) -> None:
    first, middle, last = await run_together(store, insert("a"), refused, insert("b"))
    assert (first, last) == ("a", "b")
    assert isinstance(middle, NotFound)
    assert await jobs(store) == ["a", "b"]
    assert store.db.redos == 0  # nothing to undo: no second run


async def test_a_write_failing_after_a_change_is_undone_alone(store: PostgresStore) -> None:
    first, middle, last = await run_together(
        store, insert("a"), insert("x", then_fail=True), insert("b")
    )
    assert (first, last) == ("a", "b")
    assert isinstance(middle, Conflict)
    assert await jobs(store) == ["a", "b"]  # "x" was undone; "a" and "b" written once
    assert store.db.redos == 1


async def test_a_database_error_in_one_write_does_not_fail_the_others(
    store: PostgresStore,
) -> None:
    await store.db.write(insert("a"))
    # A duplicate key aborts PostgreSQL's transaction: the batch runs again
    # with savepoints and only the duplicate fails.
    dup, fresh = await run_together(store, insert("a"), insert("c"))
    assert isinstance(dup, Conflict)
    assert fresh == "c"
    assert await jobs(store) == ["a", "c"]
    assert store.db.redos == 1


INSERT_JOBS = (
    "INSERT INTO jobs (id, name, owner, created) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[])"
)


def insert_deferred(job: str) -> Op:
    async def op(tx: Tx) -> str:
        row = (job, None, "test", 0.0)
        if not tx.defer(INSERT_JOBS, [row]):
            await tx.execute(INSERT_JOBS, [job], [None], ["test"], [0.0])
        return job

    return op


async def test_deferred_inserts_of_a_batch_are_one_statement(store: PostgresStore) -> None:
    assert await run_together(store, insert_deferred("a"), insert_deferred("b")) == ["a", "b"]
    assert await jobs(store) == ["a", "b"]
    assert store.db.redos == 0


async def test_a_failing_deferred_insert_fails_only_its_own_write(store: PostgresStore) -> None:
    # The batch's one insert fails (a duplicate): which write it was is only
    # known one by one, so the batch runs again with savepoints.
    first, dup, last = await run_together(
        store, insert_deferred("a"), insert_deferred("a"), insert_deferred("b")
    )
    assert (first, last) == ("a", "b")
    assert isinstance(dup, Conflict)
    assert await jobs(store) == ["a", "b"]
    assert store.db.redos == 1


async def test_single_creates_of_one_batch_share_one_insert(store: PostgresStore) -> None:
    items = [TaskCreate.model_validate({"command": "true", "state": "available"})]
    before = store.db.batches
    created = await asyncio.gather(*(store.create_tasks(items, ADMIN) for _ in range(5)))
    assert store.db.batches == before + 1
    ids = sorted(c[0]["_id"] for c in created)
    page = await store.db.read(lambda tx: tx.fetch("SELECT id, job FROM tasks ORDER BY id"))
    assert [(i, j) for i, j in page] == [(i, i) for i in ids]  # each its own job
    assert len(await store.events_since(0)) == 5
