"""Applying the SQLite schema: per-connection pragmas and the migrations of
``migrations.MIGRATIONS`` (re-exported here), in order, with the version kept
in ``PRAGMA user_version``."""

from __future__ import annotations

import sqlite3

from banyan.errors import BanyanError
from server.stores.sqlite.migrations import MIGRATIONS as MIGRATIONS  # re-exported


class SchemaTooNew(BanyanError):
    """The file was written by a newer Banyan: refuse it rather than guess."""


SCHEMA_VERSION = len(MIGRATIONS)


def configure(conn: sqlite3.Connection, *, synchronous: str, busy_timeout_ms: int) -> None:
    """Per-connection pragmas: WAL, foreign keys, busy timeout, durability."""
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    # The value comes from the Synchronous enum, never from a request.
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -65536")  # 64 MiB of page cache


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the file to ``SCHEMA_VERSION``; returns the version found before.

    A file newer than this code is refused rather than guessed at.
    """
    (found,) = conn.execute("PRAGMA user_version").fetchone()
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"database schema version {found} is newer than this Banyan ({SCHEMA_VERSION}); "
            "upgrade Banyan"
        )
    for version in range(found, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return int(found)


def _statements(script: str) -> list[str]:
    # executescript() would commit on its own; split so the migration stays one transaction.
    # A statement ends at a ";" where SQLite sees it complete, so a trigger's
    # body (statements between BEGIN and END) stays in one piece.
    statements: list[str] = []
    current = ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip("; \t\n"):
                statements.append(current.strip().removesuffix(";").strip())
            current = ""
    if current.strip("; \t\n"):
        statements.append(current.strip().removesuffix(";").strip())
    return statements
