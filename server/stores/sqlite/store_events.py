"""The event-feed part of ``SqliteStore``: reading the feed, its bounds and
pruning, and listening for commits (mixed into the store class)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from server.stores.sqlite import queries as Q
from server.stores.sqlite.db import Database
from server.stores.sqlite.rows import loads


class EventMethods:
    # Set by ``SqliteStore.__init__``.
    db: Database
    _clock: Callable[[], float]

    async def events_since(self, seq: int, *, limit: int = 1000) -> list[dict[str, Any]]:
        def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(Q.EVENTS_SINCE, (seq, limit)).fetchall()
            return [{"seq": s, "time": t, "type": k, "data": loads(d)} for s, t, k, d in rows]

        return await self.db.read(run)

    async def last_seq(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            (seq,) = conn.execute(Q.LAST_SEQ).fetchone()
            return int(seq)

        return await self.db.read(run)

    def add_commit_listener(self, callback: Callable[[], None]) -> None:
        self.db.on_commit.append(callback)

    def add_event_listener(self, callback: Callable[[list[dict[str, Any]]], None]) -> bool:
        def deliver(written: list[tuple[int, float, str, str]]) -> None:
            callback([{"seq": s, "time": t, "type": k, "data": loads(d)} for s, t, k, d in written])

        self.db.on_written.append(deliver)
        return True

    async def oldest_seq(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            (seq,) = conn.execute(Q.OLDEST_SEQ).fetchone()
            return int(seq)

        return await self.db.read(run)

    async def prune_events(self, *, keep: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            (last,) = conn.execute(Q.LAST_SEQ).fetchone()
            cursor = conn.execute(Q.PRUNE_EVENTS, (last - keep,))
            return int(cursor.rowcount)

        return await self.db.write(run)
