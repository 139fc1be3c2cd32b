"""The SQLite connections and group commit.

All writes go through one writer connection. ``write(fn)`` queues ``fn`` (a
plain function of a ``sqlite3.Connection``, run on the database thread); a
single loop takes everything queued, runs it as one transaction with a
savepoint per operation, and commits once, so concurrent requests share one
fsync, and a whole batch crosses to the database thread in one hop. An
operation that raises is rolled back to its savepoint alone; the others commit.
Reads use a separate connection (WAL lets them run beside the writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from banyan.errors import BanyanError, InsufficientStorage, Unavailable
from server.sqlite import schema

log = logging.getLogger(__name__)
T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]


def map_sqlite_error(exc: sqlite3.Error) -> BanyanError:
    """The client-facing error for a failure of SQLite itself."""
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and ("full" in text or "disk i/o" in text):
        return InsufficientStorage(
            "the server's disk is full: writes are refused until space returns"
        )
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return Unavailable("the database is busy; try again")
    return BanyanError(f"database error: {exc}")


async def _call(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    # aiosqlite has no public "run this function on your thread"; its queue
    # is the one hop we want (tests cover it, so an aiosqlite change shows).
    raw = conn._conn
    return await conn._execute(fn, raw, *args)  # type: ignore[no-any-return,no-untyped-call]


class Database:
    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 10_000,
        batch_max_ops: int = 512,
    ) -> None:
        self.path = path
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._batch_max_ops = batch_max_ops
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._pending: list[tuple[Op, asyncio.Future[Any]]] = []
        self._wakeup = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._closing = False
        self.on_commit: list[Callable[[], None]] = []
        self.batches = 0  # committed transactions, for benchmarks
        self.ops = 0  # operations in them

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await _call(self._writer, self._setup_writer)
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            await _call(self._reader, self._setup_reader)
        except BaseException:
            # Close what was opened: a live connection thread would keep the process up.
            for conn in (self._reader, self._writer):
                if conn is not None:
                    await conn.close()
            self._reader = self._writer = None
            raise
        self._loop_task = asyncio.create_task(self._writer_loop(), name="sqlite-group-commit")

    def _setup_writer(self, conn: sqlite3.Connection) -> None:
        schema.configure(conn, synchronous=self._synchronous, busy_timeout_ms=self._busy_timeout_ms)
        schema.migrate(conn)

    def _setup_reader(self, conn: sqlite3.Connection) -> None:
        schema.configure(conn, synchronous=self._synchronous, busy_timeout_ms=self._busy_timeout_ms)
        conn.execute("PRAGMA query_only = ON")

    async def close(self) -> None:
        """Finish queued writes, checkpoint the WAL into the main file, close."""
        self._closing = True
        if self._loop_task is not None:
            self._wakeup.set()
            while self._pending:
                await asyncio.sleep(0.005)
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for conn in (self._reader, self._writer):
            if conn is not None:
                if conn is self._writer:
                    with contextlib.suppress(sqlite3.Error):
                        await conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                await conn.close()
        self._reader = self._writer = None

    async def write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` inside a (shared) write transaction; its result once committed."""
        if self._closing:
            raise Unavailable("the server is shutting down")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future))
        self._wakeup.set()
        return await future

    async def read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` on the read connection in one hop (a consistent snapshot)."""
        assert self._reader is not None, "database not open"
        try:
            return await _call(self._reader, _in_read_transaction, op)
        except sqlite3.Error as exc:
            raise map_sqlite_error(exc) from exc

    async def _writer_loop(self) -> None:
        assert self._writer is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch = self._pending[: self._batch_max_ops]
                del self._pending[: self._batch_max_ops]
                ops = [op for op, _ in batch]
                try:
                    results = await _call(self._writer, _apply_batch, ops)
                except Exception as exc:  # the commit itself failed: nothing was written
                    error = map_sqlite_error(exc) if isinstance(exc, sqlite3.Error) else exc
                    log.warning("write batch of %d failed: %s", len(ops), exc)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                self.batches += 1
                self.ops += len(ops)
                for (_, future), (ok, value) in zip(batch, results, strict=True):
                    if future.done():  # the request was cancelled meanwhile
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
                for callback in self.on_commit:
                    callback()


def _in_read_transaction(conn: sqlite3.Connection, op: Op) -> Any:
    conn.execute("BEGIN")
    try:
        return op(conn)
    finally:
        conn.execute("COMMIT")


def _apply_batch(conn: sqlite3.Connection, ops: list[Op]) -> list[tuple[bool, Any]]:
    """One transaction for the lot; each op in its own savepoint."""
    results: list[tuple[bool, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for op in ops:
            conn.execute("SAVEPOINT op")
            try:
                value = op(conn)
            except Exception as exc:
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                if isinstance(exc, sqlite3.Error):
                    if _is_fatal(exc):
                        raise
                    exc = map_sqlite_error(exc)
                results.append((False, exc))
            else:
                conn.execute("RELEASE op")
                results.append((True, value))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return results


def _is_fatal(exc: sqlite3.Error) -> bool:
    """Errors that doom the whole transaction, not just one operation."""
    text = str(exc).lower()
    return "full" in text or "disk i/o" in text or "locked" in text or "readonly" in text
