"""Rows ↔ documents, and the events every change appends.

Documents are plain dicts shaped as the API returns them, except that times
are epoch seconds (the view formats them); ``execution`` is built from the
current attempt's columns and never carries the execution key.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from banyan.errors import NotFound
from banyan.events import Event, encode_data
from server.domain.documents import row_to_doc as row_to_doc  # re-exported
from server.domain.events import task_id_of
from server.stores.sqlite import queries as Q
from server.stores.sqlite.queries import TASK_COLUMNS as TASK_COLUMNS  # re-exported

CHUNK = 500  # ids per IN (...) list: well under SQLite's variable limit


def new_etag() -> str:
    return os.urandom(10).hex()


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def chunks(items: Sequence[str], size: int = CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def placeholders(n: int) -> str:
    return ",".join("?" * n)


def continuations_of(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {i: [] for i in ids}
    for part in chunks(ids):
        rows = conn.execute(Q.CONTINUATIONS_OF_IDS.format(ids=placeholders(len(part))), part)
        for parent, child in rows:
            found[parent].append(child)
    return found


def docs_for_rows(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    edges = continuations_of(conn, [r[0] for r in rows])
    return [row_to_doc(r, edges[r[0]]) for r in rows]


def get_doc(conn: sqlite3.Connection, task_id: str) -> dict[str, Any]:
    row = conn.execute(Q.TASK_BY_ID, (task_id,)).fetchone()
    if row is None:
        raise NotFound(f"no task with id {task_id}")
    return row_to_doc(row, continuations_of(conn, [task_id])[task_id])


def store_events(conn: sqlite3.Connection, now: float, events: Iterable[Event]) -> None:
    """Append events built by ``server.domain.events``; they commit (or not)
    with the change they describe. Each is serialised here, once."""
    store_encoded_events(conn, now, ((e.type, task_id_of(e), encode_data(e)) for e in events))


def store_encoded_events(
    conn: sqlite3.Connection, now: float, events: Iterable[tuple[str, str | None, str]]
) -> None:
    """Append events already encoded: ``(type, task id or None, data JSON)``.
    On the writer's connection each is also recorded, with its seq, for the
    event hub (``db.WriterConnection``)."""
    rows = [(now, kind, task, data) for kind, task, data in events]
    written = getattr(conn, "written", None)
    if written is None:
        conn.executemany(Q.INSERT_EVENT, rows)
    elif len(rows) == 1:  # the common case: one statement, seq and all
        (seq,) = conn.execute(Q.INSERT_EVENT_RETURNING_SEQ, rows[0]).fetchone()
        written.append((seq, now, rows[0][1], rows[0][3]))
    elif rows:
        conn.executemany(Q.INSERT_EVENT, rows)
        # One statement inserted them in order under the write lock: their
        # seqs (AUTOINCREMENT) are consecutive, up to the last one inserted.
        (last,) = conn.execute(Q.LAST_INSERT_ROWID).fetchone()
        first = last - len(rows) + 1
        written.extend((first + i, t, kind, data) for i, (t, kind, _, data) in enumerate(rows))
