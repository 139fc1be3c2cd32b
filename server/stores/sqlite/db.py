"""The SQLite connections and group commit.

All writes go through one writer connection. ``write(fn)`` queues ``fn`` (a
plain function of a ``sqlite3.Connection``, run on the database thread); a
single loop takes everything queued, runs it as one transaction with a
savepoint per operation, and commits once, so concurrent requests share one
fsync, and a whole batch crosses to the database thread in one hop. An
operation that raises is rolled back to its savepoint alone; the others commit.
Reads use a separate connection (WAL lets them run beside the writer).

When SQLite itself fails (the disk is full, a write or fsync fails, the file is
locked), the whole transaction is rolled back, every operation of the batch
gets the same client-facing error (507 for a full or failing disk, 503 for a
locked file), no commit listener runs (so no event is announced), and the loop
goes on: the next batch is a fresh transaction, so writes succeed again as soon
as space returns, with no restart. Reads keep working meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from banyan.errors import BanyanError, InsufficientStorage, Unavailable
from server.stores.sqlite import schema

log = logging.getLogger(__name__)
T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]


# Primary result codes (the low byte of an extended code such as SQLITE_IOERR_WRITE).
_STORAGE = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR}
_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
# Errors after which SQLite may have rolled the whole transaction back itself
# (https://sqlite.org/lang_transaction.html, "Response To Errors Within A Transaction").
_FATAL = _STORAGE | _BUSY | {sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CORRUPT}
DISK_FULL = "the server's disk is full; the write was not applied"
DISK_FAILED = "the server could not write to its disk (full or failing); the write was not applied"


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def map_sqlite_error(exc: sqlite3.Error, *, writing: bool = True) -> BanyanError:
    """The client-facing error for a failure of SQLite itself."""
    code = _primary_code(exc)
    if code == sqlite3.SQLITE_FULL:
        return InsufficientStorage(DISK_FULL if writing else "the server's disk is full")
    if code == sqlite3.SQLITE_IOERR:
        if writing:
            return InsufficientStorage(DISK_FAILED)
        return Unavailable("the server could not read its database (disk I/O error); try again")
    if code in _BUSY:
        return Unavailable("the database is busy; try again")
    if code == sqlite3.SQLITE_READONLY:
        return Unavailable("the database is read-only at the moment; the write was not applied")
    return BanyanError(f"database error: {exc}")


def is_fatal(exc: BaseException) -> bool:
    """An error that dooms the whole transaction, not just one operation."""
    return isinstance(exc, sqlite3.Error) and _primary_code(exc) in _FATAL


class WriterConnection(sqlite3.Connection):
    """The writer's connection: ``written`` collects what the operations of
    the open transaction recorded for after the commit (the events, with
    their seq: ``rows.store_encoded_events``). An operation rolled back to its
    savepoint takes its records with it; a committed batch hands them to
    ``Database.on_written``, so the event hub gets them without reading the
    table they were just written to."""

    written: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.written = []


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
        # After each commit, with what its operations recorded (WriterConnection.written).
        self.on_written: list[Callable[[list[Any]], None]] = []
        self.batches = 0  # committed transactions, for benchmarks
        self.ops = 0  # operations in them
        self.failed_batches = 0  # transactions rolled back by a failure of SQLite itself
        self.failing_since: float | None = None  # monotonic time writes began to fail
        self.writes_refused: str | None = None  # why, once refuse_writes was called

    async def open(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Task commands, environments and logs are private: a new database is
        # created owner-only, and SQLite gives its -wal/-shm files the same mode.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        self._writer = await aiosqlite.connect(
            self.path, isolation_level=None, factory=WriterConnection
        )
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
        if self.writes_refused is not None:
            raise Unavailable(self.writes_refused)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future))
        self._wakeup.set()
        return await future

    async def refuse_writes(self, reason: str) -> None:
        """Refuse every write from now on (503 with ``reason``): the files under
        the connections are no longer the ones at ``path`` (server.dbwatch),
        so a write could be acknowledged and then lost. What the WAL holds is
        checkpointed into the database file first, while it still can be."""
        self.writes_refused = reason
        if self._writer is not None:
            with contextlib.suppress(sqlite3.Error):
                await self._writer.execute("PRAGMA wal_checkpoint(FULL)")

    async def read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` on the read connection in one hop (a consistent snapshot)."""
        assert self._reader is not None, "database not open"
        try:
            return await _call(self._reader, _in_read_transaction, op)
        except sqlite3.Error as exc:
            raise map_sqlite_error(exc, writing=False) from exc

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
                    results, written = await _call(self._writer, _apply_batch, ops)
                except Exception as exc:  # rolled back as a whole: nothing was written
                    self._failed(exc, len(ops))
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(_client_error(exc))
                    continue
                if self.failing_since is not None:
                    log.warning(
                        "writes succeed again after %.1f s of failures",
                        time.monotonic() - self.failing_since,
                    )
                    self.failing_since = None
                self.batches += 1
                self.ops += len(ops)
                for (_, future), (ok, value) in zip(batch, results, strict=True):
                    if future.done():  # the request was cancelled meanwhile
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
                if written:
                    for listener in self.on_written:
                        listener(written)
                for callback in self.on_commit:
                    callback()

    def _failed(self, exc: Exception, count: int) -> None:
        """Log a failed batch: a warning when failures start, debug while they go on."""
        self.failed_batches += 1
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            log.warning(
                "write batch of %d rolled back: %s; refusing writes until it clears", count, exc
            )
        else:
            log.debug("write batch of %d rolled back: %s", count, exc)


def _client_error(exc: Exception) -> Exception:
    # A fresh exception per waiting request: one instance raised in many tasks
    # would collect all their tracebacks.
    return map_sqlite_error(exc) if isinstance(exc, sqlite3.Error) else exc


def _in_read_transaction(conn: sqlite3.Connection, op: Op) -> Any:
    conn.execute("BEGIN")
    try:
        return op(conn)
    finally:
        conn.execute("COMMIT")


def _apply_batch(
    conn: sqlite3.Connection, ops: list[Op]
) -> tuple[list[tuple[bool, Any]], list[Any]]:
    """One transaction for the lot; each op in its own savepoint. Returns each
    op's outcome, and what the committed ops recorded (``WriterConnection``).

    A fatal SQLite error (disk full, I/O error, busy) raises out of here after
    a full rollback: SQLite may already have rolled the transaction back
    itself, and running the remaining ops outside it would commit them one by
    one while earlier ones were silently undone.
    """
    if conn.in_transaction:  # left over by a rollback that failed: start clean
        _rollback(conn)
    results: list[tuple[bool, Any]] = []
    written: list[Any] = getattr(conn, "written", [])
    written.clear()
    conn.execute("BEGIN IMMEDIATE")
    try:
        for op in ops:
            conn.execute("SAVEPOINT op")
            mark = len(written)
            try:
                value = op(conn)
            except Exception as exc:
                if is_fatal(exc) or not conn.in_transaction:
                    raise
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                del written[mark:]
                if isinstance(exc, sqlite3.Error):
                    exc = map_sqlite_error(exc)
                results.append((False, exc))
            else:
                conn.execute("RELEASE op")
                results.append((True, value))
        conn.execute("COMMIT")
    except BaseException:
        written.clear()
        _rollback(conn)
        raise
    committed = list(written)
    written.clear()
    return results, committed


def _rollback(conn: sqlite3.Connection) -> None:
    if not conn.in_transaction:  # SQLite rolled it back already
        return
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error as exc:  # the next batch tries again before it begins
        log.warning("rollback failed: %s", exc)
