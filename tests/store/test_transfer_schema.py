"""``server.stores.transfer`` covers both schemas: every SQLite table and
column is either copied to PostgreSQL or named as derived there, and every
PostgreSQL column is filled from SQLite or rebuilt. A migration that adds a
table or a column to one backend and not the other fails here until the
copy says what to do with it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg

from server.stores import transfer
from server.stores.postgres import migrations
from server.stores.sqlite import schema
from testbed.postgres import Postgres


def _sqlite_columns(tmp_path: Path) -> dict[str, set[str]]:
    conn = sqlite3.connect(tmp_path / "schema.db")
    try:
        schema.migrate(conn)
        return {t: set(transfer.source_columns(conn, t)) for t in transfer.source_tables(conn)}
    finally:
        conn.close()


async def _postgres_columns(url: str) -> dict[str, set[str]]:
    conn = await asyncpg.connect(url)
    try:
        await migrations.migrate(conn)
        names = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        return {
            r["table_name"]: set(await transfer.target_columns(conn, r["table_name"]))
            for r in names
            if r["table_name"] != "schema_version"
        }
    finally:
        await conn.close()


def test_every_table_and_column_is_copied_or_derived(tmp_path: Path, postgres: Postgres) -> None:
    lite = _sqlite_columns(tmp_path)
    pg = asyncio.run(_postgres_columns(postgres.new_database_sync("schema")))
    copied = {t.name for t in transfer.TABLES}
    derived_tables = {k for k in transfer.DERIVED if "." not in k}
    assert set(lite) == copied | derived_tables
    runtime_tables = {k for k in transfer.RUNTIME if "." not in k}
    assert set(pg) == copied | runtime_tables
    for table in copied:
        only_lite = {f"{table}.{c}" for c in lite[table] - pg[table]}
        only_pg = {f"{table}.{c}" for c in pg[table] - lite[table]}
        assert only_lite <= set(transfer.DERIVED), only_lite
        assert only_pg <= transfer.REBUILT | transfer.RUNTIME, only_pg
