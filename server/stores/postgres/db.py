"""The PostgreSQL connections: a pool (reads, and the writer's transactions),
one listening connection for the commits of other servers, and group commit.

``write(op)`` queues ``op`` (an async function of a :class:`Tx`); one loop
per server takes everything queued and runs it as one READ COMMITTED
transaction and commits once: concurrent requests share one WAL flush, as
on SQLite. An op that raises before it changed anything (a refusal after its
reads) fails alone; when one raises after a change, or PostgreSQL fails,
the batch is rolled back and runs again with each op in its own savepoint
(two round trips more per op, so only then): an op that raises is undone
alone, and one that meets a deadlock with another server is undone and runs
again in the next batch (bounded), after this batch's locks are gone.

Inserts that no other write of the batch can depend on (the tasks of a
create that nobody can name yet) may be queued with ``tx.defer``: the
batch runs each such statement once, for all its ops, before the events.

The events the ops append (``tx.add_events``) are inserted last, by one
statement that first takes ``pg_advisory_xact_lock(EVENTS_LOCK)`` (an
InitPlan, run before its first row takes a seq): only one transaction at a
time, on any server, can be between taking a ``seq`` and committing, so
``seq`` order is commit order and a subscriber that has read seq N can never
later find a smaller seq committed (the "outbox trap"). The lock is held for
the insert and the commit only, not while the changes run. The same
statement queues a ``NOTIFY`` on ``CHANNEL`` (sent at commit, with this
server's id), which every other server's listening connection turns into
its commit listeners; a server's own commits call them at once.

Failures of PostgreSQL itself become the client-facing errors: 507 for a
full disk, 503 for an unreachable or restarting server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import asyncpg

from banyan.errors import BanyanError, Conflict, InsufficientStorage, Unavailable
from banyan.events import Event, encode_data
from server.domain.events import task_id_of
from server.stores.postgres import migrations
from server.stores.postgres import queries as Q

log = logging.getLogger(__name__)
T = TypeVar("T")
_Pending = tuple[
    Callable[["Tx"], Awaitable[Any]], "asyncio.Future[Any]", int
]  # op, its future, tries
_Result = tuple["asyncio.Future[Any]", bool, Any]

EVENTS_LOCK = 0x62616E79616E02  # the advisory lock every event-writing commit holds
CHANNEL = "banyan_commit"
CONNECT_TIMEOUT_S = 10.0
ATTEMPTS = 8  # tries of a write that keeps meeting deadlocks or serialization failures
_RETRY = {"40001", "40P01"}  # serialization_failure, deadlock_detected


def _fresh(exc: Exception) -> BaseException:
    # map_error makes a new error for PostgreSQL's own failures (one per waiting request).
    return map_error(exc)


@functools.lru_cache(maxsize=1024)
def _writes(sql: str) -> bool:
    # Conservative: only a plain SELECT (FOR UPDATE takes locks, changes nothing)
    # counts as a read; a WITH may hold an INSERT or an UPDATE.
    return sql.lstrip()[:6].upper() != "SELECT"


def columns_of(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Rows as one list per column (parameters of an ``unnest`` insert)."""
    return [list(column) for column in zip(*rows, strict=True)]


class _Redo(Exception):
    """A batch without savepoints must be undone and run again with them."""


class Tx:
    """One transaction (or read snapshot) on a connection, and the events it
    appends; ``wrote`` says whether it sent a statement that may change rows."""

    def __init__(self, conn: Any, *, deferring: bool = False) -> None:
        self.conn = conn
        self.events: list[tuple[float, str, str | None, str]] = []
        self.wrote = False
        self.deferred: dict[str, list[list[Sequence[Any]]]] | None = {} if deferring else None

    def defer(self, sql: str, *row_lists: Sequence[Sequence[Any]]) -> bool:
        """Queue rows for ``sql`` (a statement taking one array per column of
        each row list, in order), run once for the whole batch, before its
        events; False (nothing queued: run it now) when this transaction
        does not defer (a batch run again with savepoints). Only for inserts
        that no other write of the batch can depend on."""
        if self.deferred is None:
            return False
        lists = self.deferred.setdefault(sql, [[] for _ in row_lists])
        for into, rows in zip(lists, row_lists, strict=True):
            into.extend(rows)
        return True

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        self.wrote = self.wrote or _writes(sql)
        return list(await self.conn.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        self.wrote = self.wrote or _writes(sql)
        return await self.conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.wrote = self.wrote or _writes(sql)
        return await self.conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        self.wrote = self.wrote or _writes(sql)
        return str(await self.conn.execute(sql, *args))

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        if args:
            self.wrote = self.wrote or _writes(sql)
            await self.conn.executemany(sql, args)

    def add_events(self, now: float, events: Iterable[Event]) -> None:
        """Append events built by ``server.domain.events``; they commit (or
        not) with the change they describe, in this order."""
        self.events.extend((now, e.type, task_id_of(e), encode_data(e)) for e in events)


def map_error(exc: BaseException) -> BaseException:
    """The client-facing error for a failure of PostgreSQL or of the connection."""
    original: BaseException = exc
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        if state == "23505":  # another server inserted the same key meanwhile
            return Conflict(f"a concurrent change got there first ({exc}); try again")
        if state == "53100":
            return InsufficientStorage("the database server's disk is full; nothing was written")
        if state.startswith(("08", "57", "53")):
            return Unavailable(f"the database is unavailable ({state}); try again")
        return original
    if isinstance(exc, OSError | asyncpg.InterfaceError | asyncio.TimeoutError):
        return Unavailable(f"the database is unreachable: {exc}")
    return original


async def _keep_session(_conn: Any) -> None:
    """Pool ``reset``: nothing to undo (asyncpg still rolls back an open
    transaction). The store sets no session settings, takes only
    transaction-scoped advisory locks, opens no cursors and LISTENs on its own
    connection, so asyncpg's default reset query would be one more round trip
    per pooled call for nothing."""


class Database:
    def __init__(self, dsn: str, *, pool_size: int = 10, batch_max_ops: int = 512) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.server_id = uuid.uuid4().hex  # tells our own notifications from others'
        self._pool: Any = None
        self._listener: Any = None
        self._relisten: asyncio.Task[None] | None = None
        self.on_commit: list[Callable[[], None]] = []
        self.retries = 0  # writes run again after a deadlock or serialization failure
        self.redos = 0  # batches run again with savepoints (an op failed after a write)
        self.batch_max_ops = batch_max_ops
        self.batches = 0  # committed transactions, for benchmarks
        self.ops = 0  # operations in them
        self._pending: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._closing = False

    async def open(self) -> None:
        try:
            conn = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT_S)
        except (OSError, asyncpg.PostgresError) as exc:
            raise Unavailable(f"cannot connect to the database: {exc}") from exc
        try:
            await migrations.migrate(conn)
        finally:
            await conn.close()
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=self.pool_size,
            statement_cache_size=512,
            reset=_keep_session,
            timeout=CONNECT_TIMEOUT_S,  # a database gone mid-run: 503 after this, not a hang
        )
        await self._listen()
        self._loop_task = asyncio.create_task(self._writer_loop(), name="postgres-group-commit")

    async def _listen(self) -> None:
        self._listener = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT_S)
        await self._listener.add_listener(CHANNEL, self._notified)
        self._listener.add_termination_listener(self._listener_lost)

    def _listener_lost(self, _conn: Any) -> None:
        # The database restarted or dropped us: listen again (the pool
        # reconnects by itself), and meanwhile the listeners run once more
        # when it is back, for what other servers committed in between.
        if self._pool is not None and self._relisten is None:
            log.warning("lost the LISTEN connection to the database; reconnecting")
            self._relisten = asyncio.get_running_loop().create_task(self._listen_again())

    async def _listen_again(self) -> None:
        delay = 0.1
        try:
            while self._pool is not None:
                try:
                    await self._listen()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.debug("LISTEN reconnect failed: %s", exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                log.warning("listening to the database again")
                self._committed()
                return
        finally:
            self._relisten = None

    async def close(self) -> None:
        """Finish queued writes (bounded), then disconnect."""
        self._closing = True
        if self._loop_task is not None:
            self._wakeup.set()
            for _ in range(2000):  # at most ~10 s
                if not self._pending:
                    break
                await asyncio.sleep(0.005)
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        pool, self._pool = self._pool, None
        if self._relisten is not None:
            self._relisten.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relisten
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
        if pool is not None:
            await pool.close()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload != self.server_id:  # ours ran the listeners at commit already
            self._committed()

    def _committed(self) -> None:
        for callback in self.on_commit:
            callback()

    async def write(self, op: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``op`` inside a (shared) write transaction; its result once committed."""
        if self._pool is None or self._closing:
            raise Unavailable("the server is shutting down")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future, 0))
        self._wakeup.set()
        return await future

    async def _writer_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch = self._pending[: self.batch_max_ops]
                del self._pending[: self.batch_max_ops]
                try:
                    results, deferred = await self._run_batch(batch)
                except asyncpg.PostgresError as exc:
                    if len(batch) == 1 and exc.sqlstate in _RETRY and batch[0][2] + 1 < ATTEMPTS:
                        self.retries += 1  # a lone op that met a deadlock: again, alone
                        op, future, tries = batch[0]
                        self._pending.insert(0, (op, future, tries + 1))
                        continue
                    self._fail(batch, exc)
                    continue
                except Exception as exc:  # rolled back as a whole: nothing was written
                    self._fail(batch, exc)
                    continue
                self.batches += 1
                self.ops += len(results)
                self._pending[:0] = deferred  # first in the next batch, after our locks went
                for future, ok, value in results:
                    if future.done():  # the request was cancelled meanwhile
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
                self._committed()

    def _fail(self, batch: list[_Pending], exc: Exception) -> None:
        log.warning("write batch of %d rolled back: %s", len(batch), exc)
        for _, future, _ in batch:
            if not future.done():  # a fresh error each: one raised in many tasks piles up
                future.set_exception(_fresh(exc))

    async def _run_batch(self, batch: list[_Pending]) -> tuple[list[_Result], list[_Pending]]:
        """One transaction for the batch. Several ops first run without
        savepoints (each savepoint is two more round trips): an op that fails
        before it wrote anything needs no undoing. Only when one fails after
        a write, or PostgreSQL itself fails (which aborts the whole
        transaction), is everything rolled back and the batch run again with
        a savepoint per op: then an op that fails is undone alone, and one
        that meets a deadlock is undone and deferred to the next batch."""
        live = [item for item in batch if not item[1].done()]
        if len(live) > 1:
            try:
                return await self._run_ops(live, savepoints=False)
            except _Redo:
                self.redos += 1
        return await self._run_ops(live, savepoints=len(live) > 1)

    async def _run_ops(
        self, live: list[_Pending], *, savepoints: bool
    ) -> tuple[list[_Result], list[_Pending]]:
        results: list[_Result] = []
        deferred: list[_Pending] = []
        events: list[tuple[float, str, str | None, str]] = []
        inserts: dict[str, list[list[Sequence[Any]]]] = {}  # Tx.defer, of the ops that succeeded
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            for op, future, tries in live:
                tx = Tx(conn, deferring=not savepoints)
                savepoint = conn.transaction() if savepoints else None
                if savepoint is not None:
                    await savepoint.start()
                try:
                    value = await op(tx)
                except Exception as exc:
                    if savepoint is None:
                        if len(live) == 1:
                            raise  # the only op: the whole transaction goes
                        if tx.wrote or not isinstance(exc, BanyanError):
                            raise _Redo() from exc
                        # Refused before it changed anything (it only took locks): alone.
                        results.append((future, False, exc))
                        continue
                    await savepoint.rollback()
                    state = getattr(exc, "sqlstate", None)
                    if state in _RETRY and tries + 1 < ATTEMPTS:
                        self.retries += 1
                        deferred.append((op, future, tries + 1))
                    else:
                        results.append((future, False, map_error(exc)))
                    continue
                if savepoint is not None:
                    await savepoint.commit()
                for sql, row_lists in (tx.deferred or {}).items():
                    lists = inserts.setdefault(sql, [[] for _ in row_lists])
                    for into, rows in zip(lists, row_lists, strict=True):
                        into.extend(rows)
                events += tx.events
                results.append((future, True, value))
            try:
                for sql, row_lists in inserts.items():
                    await conn.execute(sql, *(c for rows in row_lists for c in columns_of(rows)))
            except Exception as exc:
                if len(live) > 1:
                    raise _Redo() from exc  # which op's rows failed? Again, one by one
                raise
            if events:
                await self.flush_events(conn, events)
        return results, deferred

    async def flush_events(
        self, conn: Any, events: list[tuple[float, str, str | None, str]]
    ) -> None:
        """Insert ``events`` last in the transaction, under the events lock
        (taken by the same statement, before its first row takes a ``seq``):
        seq order = commit order (module docstring)."""
        times, types, tasks, data = zip(*events, strict=True)
        await conn.execute(
            Q.INSERT_EVENTS_LOCKED,
            list(times),
            list(types),
            list(tasks),
            list(data),
            EVENTS_LOCK,
            CHANNEL,
            self.server_id,
        )

    async def read(self, op: Callable[[Tx], Awaitable[T]], *, snapshot: bool = True) -> T:
        """Run ``op`` on a pooled connection; in one consistent snapshot
        (a read-only REPEATABLE READ transaction) unless ``snapshot`` is False
        (one statement needs none)."""
        if self._pool is None:
            raise Unavailable("the server is shutting down")
        try:
            async with self._pool.acquire() as conn:
                if not snapshot:
                    return await op(Tx(conn))
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    return await op(Tx(conn))
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
            mapped = map_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc
