"""Rows ↔ documents on PostgreSQL (the mapping itself is
``server.domain.documents.row_to_doc``), and applying the domain's state
changes (``server.domain.transitions``) with their events."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from banyan.errors import NotFound
from server.domain.documents import loads as loads
from server.domain.documents import row_to_doc
from server.domain.transitions import Change, events_of
from server.stores.postgres import queries as Q
from server.stores.postgres.db import Tx


def new_etag() -> str:
    return os.urandom(10).hex()


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


async def continuations_of(tx: Tx, ids: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {i: [] for i in ids}
    if ids:
        for parent, child in await tx.fetch(Q.CONTINUATIONS_OF_IDS, list(ids)):
            found[parent].append(child)
    return found


async def docs_for_rows(tx: Tx, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    edges = await continuations_of(tx, [r[0] for r in rows])
    return [row_to_doc(tuple(r), edges[r[0]]) for r in rows]


async def get_doc(tx: Tx, task_id: str) -> dict[str, Any]:
    row = await tx.fetchrow(Q.GET_TASK, task_id)
    if row is None:
        raise NotFound(f"no task with id {task_id}")
    *columns, continuations = row
    return row_to_doc(tuple(columns), list(continuations))


async def apply_changes(tx: Tx, changes: Sequence[Change], now: float) -> None:
    """Write ``changes`` (one named statement per kind) and append their
    ``task.state`` events, in order."""
    if not changes:
        return
    by_kind: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for change in changes:
        _, fields = Q.SET_STATE[change.kind.value]
        values = {"id": change.task.id, "now": now, "origin": change.origin}
        values["exit_status"] = change.exit_status
        by_kind[change.kind.value].append(tuple(values[f] for f in fields))
    for kind, params in by_kind.items():
        await tx.executemany(Q.SET_STATE[kind][0], params)
    tx.add_events(now, events_of(changes))
