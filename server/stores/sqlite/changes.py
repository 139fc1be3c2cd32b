"""Applying the domain's state changes (``server.domain.transitions``) on the
writer connection: one named statement per kind, then their events, in the
caller's transaction."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from server.domain.transitions import Change, events_of
from server.stores.sqlite import queries as Q
from server.stores.sqlite.rows import store_events


def apply_changes(conn: sqlite3.Connection, changes: Sequence[Change], now: float) -> None:
    """Write ``changes`` and append their ``task.state`` events (in order)."""
    if not changes:
        return
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for change in changes:
        by_kind[change.kind.value].append(
            {
                "id": change.task.id,
                "now": now,
                "origin": change.origin,
                "exit_status": change.exit_status,
            }
        )
    for kind, params in by_kind.items():
        conn.executemany(Q.SET_STATE[kind], params)
    store_events(conn, now, events_of(changes))
