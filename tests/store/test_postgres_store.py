"""What only the PostgreSQL store has to prove: several servers on one
database. The outbox trap provoked on purpose, two stores racing for the
same tasks, commits of one store heard by another, and migrations that are
applied on open once and only once. Each test gets a fresh database in the
session's throwaway cluster (``testbed.postgres``)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from banyan.models import TaskCreate
from banyan.resources import Amounts, Resources
from banyan.tokens import Caller, Role
from server.domain import claims
from server.domain import events as E
from server.stores.postgres import attempts, migrations
from server.stores.postgres import queries as Q
from server.stores.postgres.db import EVENTS_LOCK, Tx
from server.stores.postgres.store import PostgresStore
from testbed.postgres import Postgres

ADMIN = Caller("admin", Role.ADMIN)
BIG = Resources(cores=64, memory=2**40)
WAIT_S = 20.0


@pytest.fixture
async def url(postgres: Postgres) -> str:
    return await postgres.new_database("pg")


@pytest.fixture
async def two(url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one database: two servers, as far as the database can tell."""
    a, b = PostgresStore(url, pool_size=6), PostgresStore(url, pool_size=6)
    await asyncio.gather(a.open(), b.open())
    yield a, b
    await asyncio.gather(a.close(), b.close())


@pytest.fixture
async def store_and_conn(url: str) -> AsyncIterator[tuple[PostgresStore, asyncpg.Connection]]:
    """An open store, and a connection of the test's own beside it (another
    server's transaction, or a look at the plan)."""
    store = PostgresStore(url)
    await store.open()
    conn = await asyncpg.connect(url)
    yield store, conn
    await conn.close()
    await store.close()


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds (bounded)."""
    deadline = time.monotonic() + WAIT_S
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def created(task_id: str) -> E.ev.TaskCreated:
    return E.task_created(
        task_id, name=None, state="inactive", queue="default", priority=0, owner="t", group=False
    )


async def test_the_outbox_trap_happens_without_the_lock(url: str) -> None:
    # The control: plain inserts, the smaller seq committed last. A reader
    # that moved past the larger seq never sees the smaller one. This is the
    # trap the store's protocol must (and, below, does) rule out.
    store = PostgresStore(url)
    await store.open()
    early, late = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        insert = "INSERT INTO events (time, type, data) VALUES (0, 'test', '{}') RETURNING seq"
        tr_early = early.transaction()
        await tr_early.start()
        small = await early.fetchval(insert)
        async with late.transaction():
            large = await late.fetchval(insert)
        assert small < large
        seen = await store.events_since(0)
        assert [e["seq"] for e in seen] == [large]  # the reader moves on to `large`
        await tr_early.commit()
        assert await store.events_since(large) == []  # `small` is skipped for good
    finally:
        await early.close()
        await late.close()
        await store.close()


async def test_the_outbox_trap_cannot_happen_with_the_store(
    two: tuple[PostgresStore, PostgresStore], url: str
) -> None:
    # Server A's transaction takes its seq (through the store's own
    # flush_events) and stays open; server B commits a change meanwhile. B
    # must wait for A (so its seq is larger and commits later), and a reader
    # polling all along sees the events in seq order with none skipped.
    a, b = two
    conn = await asyncpg.connect(url)
    seen: list[int] = []

    async def read() -> None:
        last = seen[-1] if seen else 0
        seen.extend(e["seq"] for e in await b.events_since(last))

    try:
        transaction = conn.transaction()
        await transaction.start()
        tx = Tx(conn)
        tx.add_events(time.time(), [created("a" * 24)])
        await a.db.flush_events(conn, tx.events)
        small = await conn.fetchval("SELECT max(seq) FROM events")
        later = asyncio.create_task(
            b.create_tasks([TaskCreate.model_validate({"command": "true"})], ADMIN)
        )

        async def b_waits_for_the_lock() -> bool:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND objid = $1::bigint % 4294967296",
                EVENTS_LOCK,
            )
            return bool(waiting)

        await until(b_waits_for_the_lock, "server B to queue on the events lock")
        await read()
        assert seen == []  # nothing is readable while A holds its seq uncommitted
        assert not later.done()
        await transaction.commit()
        (meta,) = await asyncio.wait_for(later, WAIT_S)
        await read()
        assert seen[0] == small
        assert len(seen) == 2 and seen[1] > small
        assert (await b.events_since(small))[0]["data"]["_id"] == meta["_id"]
    finally:
        await conn.close()


async def test_two_servers_racing_for_2000_tasks_never_claim_one_twice(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    total = 2000
    items = [TaskCreate.model_validate({"command": "true", "state": "available"})] * total
    for start in range(0, total, 500):
        await a.create_tasks(items[start : start + 500], ADMIN)
    claimed: list[str] = []

    async def claimer(store: PostgresStore, worker: str) -> None:
        for _ in range(total):  # bounded: each round claims at least one task or stops
            got = await store.claim(
                worker=worker, token=worker, free=BIG, queues=["default"], limit=7
            )
            if not got:
                return
            claimed.extend(attempt["task"] for attempt in got)

    await asyncio.wait_for(
        asyncio.gather(*(claimer(s, f"w{i}-{n}") for n in range(4) for i, s in enumerate(two))),
        timeout=120,
    )
    twice = [task for task, n in Counter(claimed).items() if n > 1]
    assert twice == []
    assert len(claimed) == total
    page = await b.statistics()
    assert page["tasks"]["by_state"]["running"] == total
    attempts = await a.db.read(lambda tx: tx.fetchval("SELECT count(*) FROM attempts"))
    assert attempts == total


async def test_a_commit_on_one_server_runs_the_listeners_of_the_other(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    heard = asyncio.Event()
    b.add_commit_listener(heard.set)
    await a.create_tasks([TaskCreate.model_validate({"command": "true"})], ADMIN)
    await asyncio.wait_for(heard.wait(), WAIT_S)
    assert [e["type"] for e in await b.events_since(0)] == ["task.created"]


async def test_migrations_run_on_open_once_even_when_servers_start_together(url: str) -> None:
    stores = [PostgresStore(url) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))  # concurrent first starts
    await stores[0].close()
    again = PostgresStore(url)
    await again.open()  # a restart: nothing to do, nothing fails
    stores[0] = again
    try:
        health = await again.health()
        assert health.schema_version == migrations.SCHEMA_VERSION
        rows = await again.db.read(lambda tx: tx.fetch("SELECT version FROM schema_version"))
        assert sorted(v for (v,) in rows) == list(range(1, migrations.SCHEMA_VERSION + 1))
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_a_database_from_a_newer_banyan_is_refused(url: str) -> None:
    store = PostgresStore(url)
    await store.open()
    await store.db.write(
        lambda tx: tx.execute(
            "INSERT INTO schema_version (version, applied) VALUES ($1, 0)",
            migrations.SCHEMA_VERSION + 1,
        )
    )
    await store.close()
    with pytest.raises(migrations.SchemaTooNew, match="newer than this Banyan"):
        await PostgresStore(url).open()


async def test_an_unreachable_database_is_a_clear_error(postgres: Postgres) -> None:
    from banyan.errors import Unavailable
    from testbed.procs import free_port

    store = PostgresStore(f"postgresql://banyan@127.0.0.1:{free_port()}/nothing")
    with pytest.raises(Unavailable, match="cannot connect to the database"):
        await store.open()


async def test_claims_read_for_update_skip_locked(
    store_and_conn: tuple[PostgresStore, asyncpg.Connection],
) -> None:
    # A task locked by another transaction (another server claiming or
    # changing it) is passed over, not waited for.
    store, conn = store_and_conn
    first, second = await store.create_tasks(
        [TaskCreate.model_validate({"command": "true", "state": "available"})] * 2, ADMIN
    )
    async with conn.transaction():
        await conn.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", first["_id"])
        got = await asyncio.wait_for(
            store.claim(worker="w", token="w", free=BIG, queues=["default"], limit=2),
            WAIT_S,
        )
        assert [a["task"] for a in got] == [second["_id"]]


async def test_a_claim_under_way_elsewhere_holds_only_the_tasks_it_takes(
    two: tuple[PostgresStore, PostgresStore], url: str
) -> None:
    # Server A's claim (limit 2) is made and its transaction is still open
    # (its group commit not yet done) when server B's worker claims. B's
    # worker gets two of the tasks A did not take. It used to get none: A's
    # claim locked its whole scan window (eight times its limit: all ten
    # tasks here) until its commit, and B's worker, answered "nothing", then
    # waited for a push that never came while eight tasks were available.
    a, b = two
    made = await a.create_tasks(
        [TaskCreate.model_validate({"command": "true", "state": "available"})] * 10, ADMIN
    )
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            on_a = await attempts.claim(
                Tx(conn), worker="wa", token="wa", free=BIG, queues=["default"], limit=2,
                now=time.time(),
            )  # fmt: skip
            assert len(on_a) == 2
            on_b = await asyncio.wait_for(
                b.claim(worker="wb", token="wb", free=BIG, queues=["default"], limit=2), WAIT_S
            )
            taken_by_a = {attempt["task"] for attempt in on_a}
            assert len(on_b) == 2 and not taken_by_a & {attempt["task"] for attempt in on_b}
            # B's claim raced A's for the same first tasks and passed them by.
            assert {t["_id"] for t in made[:2]} == taken_by_a
    finally:
        await conn.close()


async def test_a_claim_passes_over_a_task_changed_since_its_scan(
    store_and_conn: tuple[PostgresStore, asyncpg.Connection],
) -> None:
    # The scan locks nothing: the start takes a task only if it is still
    # available and unchanged (its etag), so a change committed between the
    # two is not overwritten by a claim built on the old row.
    store, conn = store_and_conn
    first, second = await store.create_tasks(
        [TaskCreate.model_validate({"command": "true", "state": "available"})] * 2, ADMIN
    )
    scanned = await attempts._scan(
        Tx(conn), ["default"], Amounts.of(BIG), 2, time.time(), None, claims.pack, []
    )
    assert [row[0] for _, _, row in scanned] == [first["_id"], second["_id"]]
    await conn.execute("UPDATE tasks SET etag = 'changed' WHERE id = $1", first["_id"])
    async with conn.transaction():
        started = await attempts._start(
            Tx(conn), scanned, worker="w", token="w", now=time.time(), queued=False
        )
    assert [a["task"] for a in started] == [second["_id"]]


async def test_a_lost_listen_connection_comes_back(
    two: tuple[PostgresStore, PostgresStore], url: str
) -> None:
    # The database ends server B's LISTEN session (a restart, an admin):
    # B listens again, runs its listeners once for what it may have missed,
    # and hears server A's commits as before.
    a, b = two
    heard = asyncio.Event()
    b.add_commit_listener(heard.set)
    old = b.db._listener.get_server_pid()
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", old)
    finally:
        await conn.close()

    async def listening_again() -> bool:
        listener = b.db._listener
        return bool(listener.get_server_pid() != old and not listener.is_closed())

    await until(listening_again, "server B to listen again")
    await asyncio.wait_for(heard.wait(), WAIT_S)  # the catch-up call
    heard.clear()
    await a.create_tasks([TaskCreate.model_validate({"command": "true"})], ADMIN)
    await asyncio.wait_for(heard.wait(), WAIT_S)


async def test_writes_queued_together_commit_together_and_fail_alone(url: str) -> None:
    # Group commit: writes queued at once share one transaction; the one
    # that fails is undone alone, its events with it.
    from banyan.errors import NotFound
    from banyan.models import TaskPatch

    store = PostgresStore(url)
    await store.open()
    try:
        batches = store.db.batches
        make = TaskCreate.model_validate({"command": "true", "name": "ok"})
        results = await asyncio.gather(
            store.create_tasks([make], ADMIN),
            store.update_task("f" * 24, TaskPatch.model_validate({"name": "x"}), ADMIN),
            store.create_tasks([make, make], ADMIN),
            return_exceptions=True,
        )
        assert store.db.batches == batches + 1
        assert isinstance(results[1], NotFound)
        created = [r for r in results if isinstance(r, list)]
        assert sum(len(r) for r in created) == 3
        events = await store.events_since(0)
        assert [e["type"] for e in events] == ["task.created"] * 3
    finally:
        await store.close()


async def test_a_full_workers_claim_reads_the_coreless_index(
    store_and_conn: tuple[PostgresStore, asyncpg.Connection],
) -> None:
    # The claim of a worker with no core free must not walk every available
    # task: the planner has to see that its query matches the partial index,
    # in the generic plan too (a prepared statement's, after a few runs), where
    # only the condition the query repeats from the index can prove it.
    store, conn = store_and_conn
    await store.create_tasks(
        [TaskCreate.model_validate({"command": "true", "state": "available"})] * 200, ADMIN
    )
    await conn.execute("ANALYZE tasks")
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    sql = Q.CLAIM_CANDIDATES_CORELESS_CHECKED.format(order=claims.ORDER)
    types = "text[], float8, bigint, bigint, float8, float8, bigint, text[], text"
    await conn.execute(f"PREPARE coreless ({types}) AS {sql}")
    now = repr(time.time())
    rows = await conn.fetch(
        f"EXPLAIN EXECUTE coreless ('{{default}}', 1e-9, 0, 0, {now}, NULL, 256, '{{}}', 'w')"
    )
    plan = "\n".join(row[0] for row in rows)
    assert "tasks_claim_coreless" in plan, plan
