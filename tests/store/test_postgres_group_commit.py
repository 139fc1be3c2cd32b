"""The PostgreSQL store's group commit without a savepoint per write: writes
queued together share one transaction; one refused before it changed
anything fails alone, and one that fails after changing rows makes the batch
run again with savepoints, so it is undone alone and the others commit once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from banyan.errors import Conflict, NotFound
from server.stores.postgres.db import Tx
from server.stores.postgres.store import PostgresStore
from testbed.postgres import Postgres

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
