"""``banyan-server migrate --from PATH.db --to postgresql://...``: copy a
SQLite database into an empty PostgreSQL one.

What is copied: every table the two schemas share (``TABLES``, parents
before children), column by column, each value converted to the PostgreSQL
column's type (0/1 to booleans, JSON text to ``jsonb``). Event ``seq``
values, token ids (the digests, roles and revocations with them) and the
other row ids are kept, and each id sequence is set past the highest id
SQLite ever gave (``sqlite_sequence`` included), so the event feed resumes
from the old ``seq`` with no gap and no ``seq`` is given twice.

What is not copied, because PostgreSQL derives it (``DERIVED``): SQLite's
counter tables kept by triggers (``task_counts``, ``job_counts``,
``attempt_durations``, ``duration_buckets``) and the job columns kept the
same way (``jobs.total``, ``first_started``, ``last_ended``); the
PostgreSQL store reads those from its indexes. One PostgreSQL column has no
SQLite counterpart: ``attempts.available_from`` (when the task last became
available before that attempt, for the wait-time statistics); it is rebuilt
from the task's ``available_since`` for its latest attempt and from the
previous attempt's end otherwise (``_ATTEMPTS``).

How: the SQLite file is opened read-only (``mode=ro``), in one read
transaction, so the copy is one consistent snapshot; a file that another
process has open (a running server) is refused, since writes it makes after
the snapshot would be lost. The PostgreSQL schema is migrated as the store
does on open; then ONE transaction locks every table, checks that all are
empty, streams each table with ``COPY`` (``copy_records_to_table``, rows
read in batches), sets the sequences and compares the row counts, so a
failure or a mismatch leaves the target as it was.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from banyan.errors import BanyanError
from server.stores import parse_location, shown_location
from server.stores.sqlite.schema import SCHEMA_VERSION as SQLITE_VERSION

BATCH_ROWS: Final = 5000


class Refused(BanyanError):
    """The migration cannot start: its message is the one line the user sees."""


@dataclass(frozen=True)
class Table:
    """A table copied as is (``select`` overrides the SQLite query); ``ids``
    names its id column whose PostgreSQL sequence is set past the highest."""

    name: str
    order: str
    ids: str | None = None
    select: str | None = None


_ATTEMPTS: Final = """
    SELECT a.*, CASE
        WHEN a.attempt = t.attempt
            AND coalesce(t.available_since, t.created) <= a.time_started
        THEN coalesce(t.available_since, t.created)
        ELSE coalesce(p.time_terminated, t.created)
    END AS available_from
    FROM attempts a JOIN tasks t ON t.id = a.task_id
    LEFT JOIN attempts p ON p.task_id = a.task_id AND p.attempt = a.attempt - 1
    ORDER BY a.task_id, a.attempt
"""

# Parents before children (foreign keys).
TABLES: Final = (
    Table("tokens", "id", ids="id"),
    Table("jobs", "id"),
    Table("tasks", "id"),
    Table("continuations", "parent, child"),
    Table("attempts", "task_id, attempt", select=_ATTEMPTS),
    Table("memory_usage", "id", ids="id"),
    Table("logs", "id", ids="id"),
    Table("events", "seq", ids="seq"),
    Table("workers", "name"),
    Table("idempotency", "caller, key"),
)
# SQLite tables and columns PostgreSQL derives instead of storing.
DERIVED: Final = {
    "task_counts": "counted from the tasks' indexes",
    "job_counts": "counted from the tasks' indexes",
    "attempt_durations": "read from the attempts",
    "duration_buckets": "read from the attempts",
    "jobs.total": "counted from the tasks",
    "jobs.first_started": "read from the tasks",
    "jobs.last_ended": "read from the tasks",
}
# PostgreSQL columns the SQLite schema does not have: rebuilt by the query above.
REBUILT: Final = {"attempts.available_from"}
# PostgreSQL-only state of the servers running on the database
# (``postgres/cluster.py``): nothing to copy; after a copy it is empty, and
# the copied workers recorded as connected are on no live server, so the
# first server started takes them over after their silence, as on SQLite.
RUNTIME: Final = {"servers", "workers.server", "workers.draining"}


@dataclass
class Report:
    """Rows per table in the source and, after the copy, in the target."""

    source: dict[str, int] = field(default_factory=dict)
    target: dict[str, int] = field(default_factory=dict)
    next_seq: int = 1
    seconds: float = 0.0

    @property
    def mismatched(self) -> list[str]:
        return [t for t, n in self.source.items() if self.target.get(t) != n]

    def lines(self) -> list[str]:
        width = max(len(t) for t in self.source) if self.source else 5
        out = [f"{'table':<{width}}  {'SQLite':>10}  {'PostgreSQL':>10}"]
        for name, n in self.source.items():
            got = self.target.get(name)
            mark = "" if got == n else "  MISMATCH"
            out.append(f"{name:<{width}}  {n:>10,}  {'-' if got is None else f'{got:>10,}'}{mark}")
        out.append(f"event feed: the next seq is {self.next_seq:,}")
        out.append("derived on PostgreSQL, not copied: " + ", ".join(DERIVED))
        return out


# --- the source ----------------------------------------------------------------------


def held_by_another_process(db: Path) -> int | None:
    """The PID of another process that has ``db`` open, or None. Every SQLite
    connection to a WAL database holds a read lock on the ``-shm`` file's
    "DMS" byte (128) while it is open, so a running server always shows;
    ``F_GETLK`` only asks (it takes no lock, so nothing of ours is released)."""
    shm = Path(f"{db}-shm")
    try:
        fd = os.open(shm, os.O_RDONLY)
    except OSError:
        return None  # no -shm: no connection has the database open in WAL mode
    try:
        probe = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 128, 1, 0)
        kind, _, _, _, pid = struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, probe))
    finally:
        os.close(fd)
    return None if kind == fcntl.F_UNLCK else int(pid)


def open_source(db: Path) -> sqlite3.Connection:
    """The SQLite database read-only, in a read transaction (one snapshot);
    ``Refused`` if it is missing, in use, not Banyan's or not current."""
    if not db.is_file():
        raise Refused(f"no SQLite database at {db}")
    pid = held_by_another_process(db)
    if pid is not None:
        raise Refused(
            f"{db} is open in another process (pid {pid}, a running banyan-server?): "
            "stop it first, or what it writes after the copy begins is lost"
        )
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as exc:
        raise Refused(f"cannot read {db} as a SQLite database: {exc}") from exc
    if "tasks" not in tables:
        conn.close()
        raise Refused(f"{db} is not a Banyan database (it has no tasks table)")
    if version != SQLITE_VERSION:
        conn.close()
        raise Refused(
            f"{db} has schema version {version}, this Banyan's is {SQLITE_VERSION}: "
            + (
                "start this Banyan's banyan-server on it once (it migrates on start), "
                "stop it, then migrate (the copy opens the file read-only)"
                if version < SQLITE_VERSION
                else "migrate with the newer Banyan that wrote it"
            )
        )
    conn.execute("BEGIN")  # deferred: the snapshot is taken at the first read
    return conn


def source_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def source_tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    return {r[0] for r in rows}


def highest_id(conn: sqlite3.Connection, table: Table) -> int:
    """The highest id SQLite ever gave in ``table`` (AUTOINCREMENT remembers
    deleted ones in ``sqlite_sequence``: the feed must never reuse a seq)."""
    assert table.ids is not None
    (top,) = conn.execute(f"SELECT coalesce(max({table.ids}), 0) FROM {table.name}").fetchone()
    has_sequence = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
    ).fetchone()
    if has_sequence:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table.name,))
        found = row.fetchone()
        if found is not None:
            top = max(top, int(found[0]))
    return int(top)


# --- values --------------------------------------------------------------------------


def converter(pg_type: str) -> Callable[[Any], Any]:
    """SQLite value → what asyncpg's binary COPY takes for a column of ``pg_type``."""
    if pg_type == "boolean":
        return lambda v: None if v is None else bool(v)
    if pg_type in {"bigint", "integer", "smallint"}:
        return lambda v: None if v is None else int(v)
    if pg_type == "double precision":
        return lambda v: None if v is None else float(v)
    if pg_type == "bytea":
        return lambda v: v.encode() if isinstance(v, str) else v
    # text and jsonb (asyncpg's jsonb codec takes the JSON text as it is)
    return lambda v: None if v is None else str(v)


def rows(
    conn: sqlite3.Connection, sql: str, convert: list[Callable[[Any], Any]]
) -> Iterator[tuple[Any, ...]]:
    """The query's rows, read ``BATCH_ROWS`` at a time, converted."""
    cursor = conn.execute(sql)
    while batch := cursor.fetchmany(BATCH_ROWS):
        for row in batch:
            yield tuple(f(v) for f, v in zip(convert, row, strict=True))


# --- the copy ------------------------------------------------------------------------


def check_target_url(url: str) -> None:
    scheme, location = parse_location(url)
    if scheme != "postgresql" or not location:
        raise Refused(
            f"--to must be a postgresql://USER@HOST:PORT/DATABASE URL, not {shown_location(url)!r}"
        )


async def connect_target(url: str) -> Any:
    """An asyncpg connection with the schema current (migrated as the store
    does on open); ``Refused`` with one line when it cannot be had."""
    import asyncpg  # the postgres extra: imported when used

    from server.stores.postgres import migrations

    shown = shown_location(url)
    try:
        conn = await asyncpg.connect(url, timeout=10)
    except (
        OSError,
        TimeoutError,
        ValueError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ) as exc:
        raise Refused(f"cannot connect to {shown}: {' '.join(str(exc).split())}") from exc
    try:
        await migrations.migrate(conn)
    except migrations.SchemaTooNew as exc:
        await conn.close()
        raise Refused(f"{shown}: {exc.message}") from exc
    return conn


async def target_columns(conn: Any, table: str) -> dict[str, str]:
    found = await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        table,
    )
    return {r["column_name"]: r["data_type"] for r in found}


async def copy_database(source: Path, url: str) -> Report:
    """Copy ``source`` into the empty database at ``url`` (see the module's
    docstring); the report says the rows per table on both sides. A count
    mismatch rolls the whole copy back (the report says where)."""
    check_target_url(url)
    started = time.monotonic()
    lite = open_source(source)
    try:
        conn = await connect_target(url)
        try:
            report = Report()
            try:
                async with conn.transaction():
                    await _copy_all(lite, conn, report)
            except _Mismatch:
                pass  # rolled back; the report shows the counts
            report.seconds = time.monotonic() - started
            return report
        finally:
            await conn.close()
    finally:
        lite.close()


class _Mismatch(Exception):
    """Raised inside the transaction to roll it back."""


async def _copy_all(lite: sqlite3.Connection, conn: Any, report: Report) -> None:
    names = ", ".join(t.name for t in TABLES)
    await conn.execute(f"LOCK TABLE {names} IN EXCLUSIVE MODE")
    held = []
    for table in TABLES:
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table.name})"):
            held.append(table.name)
    if held:
        raise Refused(
            f"the target database is not empty (it has {', '.join(held)}; a server "
            "started on it makes a token): migrate into a new, empty database"
        )
    present = source_tables(lite)
    for table in TABLES:
        if table.name not in present:
            raise Refused(f"the SQLite database has no {table.name} table")
        columns = await target_columns(conn, table.name)
        wanted = [c for c in source_columns(lite, table.name) if c in columns]
        wanted += [c.split(".")[1] for c in REBUILT if c.startswith(f"{table.name}.")]
        sql = table.select or f"SELECT * FROM {table.name} ORDER BY {table.order}"
        chosen = f"SELECT {', '.join(wanted)} FROM ({sql})"
        await conn.copy_records_to_table(
            table.name,
            records=rows(lite, chosen, [converter(columns[c]) for c in wanted]),
            columns=wanted,
        )
        if table.ids is not None:
            top = highest_id(lite, table)
            sequence = f"pg_get_serial_sequence('{table.name}', '{table.ids}')"
            await conn.execute(f"SELECT setval({sequence}, $1, $2)", max(top, 1), top > 0)
            if table.name == "events":
                report.next_seq = top + 1
        (n,) = lite.execute(f"SELECT count(*) FROM {table.name}").fetchone()
        report.source[table.name] = int(n)
        report.target[table.name] = int(await conn.fetchval(f"SELECT count(*) FROM {table.name}"))
    if report.mismatched:
        raise _Mismatch


def run(source: Path, url: str) -> int:
    """The command: print the counts; 0 when they match, 1 when not (nothing
    was written then). ``Refused`` propagates (the CLI prints it, exit 2)."""
    import asyncio

    report = asyncio.run(copy_database(source, url))
    for line in report.lines():
        print(line)
    if report.mismatched:
        print(
            f"banyan-server migrate: row counts differ in {', '.join(report.mismatched)}; "
            "the copy was rolled back, the target is unchanged"
        )
        return 1
    total = sum(report.target.values())
    print(
        f"migrated {total:,} rows from {source} to {shown_location(url)} in {report.seconds:.1f} s"
    )
    return 0
