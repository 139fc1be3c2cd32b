"""The PostgreSQL connections: a pool for the requests, one listening
connection for the commits of other servers, and the write transaction.

``write(op)`` runs ``op(tx)`` in one READ COMMITTED transaction on a pooled
connection. The events ``op`` appends (``tx.add_events``) are inserted last,
after ``pg_advisory_xact_lock(EVENTS_LOCK)``: only one transaction at a time
can be between taking a ``seq`` and committing, so ``seq`` order is commit
order, on one server or many, and a subscriber that has read seq N can never
later find a smaller seq committed (the "outbox trap"). The lock is held for
the insert and the commit only, not while the change itself runs. The same
statement queues a ``NOTIFY`` on ``CHANNEL`` (sent at commit, with the
server's id), which every server's listening connection turns into its
commit listeners; a server's own commits call them at once, its own
notifications are ignored.

A deadlock or serialization failure (another server changed the same rows
in another order) rolls back and runs ``op`` again, a bounded number of
times. Failures of PostgreSQL itself become the client-facing errors: 507
for a full disk, 503 for an unreachable or restarting server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import asyncpg

from banyan.errors import BanyanError, InsufficientStorage, Unavailable
from banyan.events import Event, encode_data
from server.domain.events import task_id_of
from server.stores.postgres import migrations
from server.stores.postgres import queries as Q

log = logging.getLogger(__name__)
T = TypeVar("T")

EVENTS_LOCK = 0x62616E79616E02  # the advisory lock every event-writing commit holds
CHANNEL = "banyan_commit"
ATTEMPTS = 8  # tries of a write that keeps meeting deadlocks or serialization failures
_RETRY = {"40001", "40P01"}  # serialization_failure, deadlock_detected


class Tx:
    """One transaction (or read snapshot) on a connection, and the events it appends."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.events: list[tuple[float, str, str | None, str]] = []

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        return list(await self.conn.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self.conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        return str(await self.conn.execute(sql, *args))

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        if args:
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
        if state == "53100":
            return InsufficientStorage("the database server's disk is full; nothing was written")
        if state.startswith(("08", "57", "53")):
            return Unavailable(f"the database is unavailable ({state}); try again")
        return original
    if isinstance(exc, OSError | asyncpg.InterfaceError | asyncio.TimeoutError):
        return Unavailable(f"the database is unreachable: {exc}")
    return original


class Database:
    def __init__(self, dsn: str, *, pool_size: int = 10) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.server_id = uuid.uuid4().hex  # tells our own notifications from others'
        self._pool: Any = None
        self._listener: Any = None
        self._relisten: asyncio.Task[None] | None = None
        self.on_commit: list[Callable[[], None]] = []
        self.retries = 0  # writes run again after a deadlock or serialization failure

    async def open(self) -> None:
        try:
            conn = await asyncpg.connect(self.dsn)
        except (OSError, asyncpg.PostgresError) as exc:
            raise Unavailable(f"cannot connect to the database: {exc}") from exc
        try:
            await migrations.migrate(conn)
        finally:
            await conn.close()
        self._pool = await asyncpg.create_pool(
            self.dsn, min_size=1, max_size=self.pool_size, statement_cache_size=512
        )
        await self._listen()

    async def _listen(self) -> None:
        self._listener = await asyncpg.connect(self.dsn)
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
        """Run ``op`` in one transaction and commit it with its events."""
        if self._pool is None:
            raise Unavailable("the server is shutting down")
        for attempt in range(ATTEMPTS):
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    tx = Tx(conn)
                    result = await op(tx)
                    if tx.events:
                        await self.flush_events(tx)
            except asyncpg.PostgresError as exc:
                if getattr(exc, "sqlstate", None) in _RETRY and attempt + 1 < ATTEMPTS:
                    self.retries += 1
                    await asyncio.sleep(random.uniform(0, 0.002 * 2**attempt))
                    continue
                raise map_error(exc) from exc
            except (OSError, asyncpg.InterfaceError) as exc:
                raise map_error(exc) from exc
            self._committed()
            return result
        raise BanyanError("unreachable")  # pragma: no cover (the loop returns or raises)

    async def flush_events(self, tx: Tx) -> None:
        # Lock first, then take the seqs: seq order = commit order (module docstring).
        await tx.conn.execute(
            "SELECT pg_advisory_xact_lock($1), pg_notify($2, $3)",
            EVENTS_LOCK,
            CHANNEL,
            self.server_id,
        )
        times, types, tasks, data = zip(*tx.events, strict=True)
        await tx.conn.execute(Q.INSERT_EVENTS, list(times), list(types), list(tasks), list(data))

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
