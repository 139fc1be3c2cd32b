"""The continuation graph inside a write transaction: adding and removing
edges (with cycle and state checks), releasing continuations when a parent
succeeds, cancelling a tree, and reviving it when the root is retried.

Every function here runs on the writer connection inside the caller's
transaction and appends the events for what it changed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from banyan.errors import InvalidInput
from banyan.states import State
from banyan.tokens import Caller
from server.domain import graph as rules
from server.domain import transitions as T
from server.stores.sqlite import queries as Q
from server.stores.sqlite.changes import apply_changes
from server.stores.sqlite.rows import chunks, placeholders, store_events

_DESCENDANTS = Q.DESCENDANTS


def make_ready(conn: sqlite3.Connection, ids: Iterable[str], now: float) -> None:
    """Tasks whose dependencies are all met become available; a group task
    (no command) instead succeeds at once and releases its own continuations
    (``transitions.activate``)."""
    stack = list(ids)
    while stack:
        task_id = stack.pop()
        command, state, name, queue = conn.execute(Q.READY_ROW, (task_id,)).fetchone()
        change = T.activate(T.TaskRef(task_id, state, name, queue), group=command is None)
        apply_changes(conn, [change], now)
        if change.releases:
            stack.extend(release(conn, task_id, now))


def release(conn: sqlite3.Connection, parent: str, now: float) -> list[str]:
    """``parent`` succeeded: each continuation waits on one parent less.
    Returns the continuations now ready to run (still inactive, no parent left)."""
    return T.ready_after_release(conn.execute(Q.RELEASE, (now, parent)).fetchall())


def cancel_tree(
    conn: sqlite3.Connection,
    roots: Sequence[str],
    *,
    origin: str,
    now: float,
    include_roots: bool,
) -> list[str]:
    """Cancel ``roots`` (when ``include_roots``) and everything downstream of them
    (``transitions.cascade_cancel``). ``origin`` is kept so that a retry of it
    can revive exactly this cascade. Returns the ids that went to
    ``pending_cancellation``."""
    if not roots:
        return []
    found: list[tuple[str, str, str | None, str]] = []
    for part in chunks(list(roots)):
        marks = placeholders(len(part))
        select = "SELECT id, state, name, queue FROM tasks WHERE id IN ({ids})"
        sql = _DESCENDANTS.format(roots=marks) + select.format(ids="SELECT id FROM d")
        found += conn.execute(sql, part).fetchall()
        if include_roots:
            found += conn.execute(select.format(ids=marks), part).fetchall()
    changes = T.cascade_cancel((T.TaskRef(*row) for row in found), origin=origin)
    apply_changes(conn, changes, now)
    return [c.task.id for c in changes if c.kind is T.Kind.STOPPING]


def revive(conn: sqlite3.Connection, root: str, now: float) -> None:
    """Undo the cascade that ``root`` started: its cancelled continuations that
    never ran go back to waiting (inactive), and run when ``root`` succeeds."""
    rows = conn.execute(Q.REVIVABLE, (root, root)).fetchall()
    changes, ready = T.revive(
        (T.TaskRef(i, State.CANCELLED, n, q), pending) for i, n, q, pending in rows
    )
    apply_changes(conn, changes, now)
    make_ready(conn, ready, now)


def reaches(conn: sqlite3.Connection, start: str, goal: str) -> bool:
    """Is ``goal`` downstream of (or equal to) ``start``?"""
    if start == goal:
        return True
    row = conn.execute(Q.REACHES, (start, goal)).fetchone()
    return row is not None


def add_edges(
    conn: sqlite3.Connection,
    pairs: Sequence[tuple[str, str]],
    caller: Caller,
    now: float,
    *,
    issue_key: str = "continuations",
) -> None:
    """Make each child a continuation of its parent."""
    info = _load(conn, {i for pair in pairs for i in pair}, issue_key)
    for parent, child in pairs:
        c_state, c_owner, _ = info[child]
        rules.check_link(rules.End(parent, *info[parent]), rules.End(child, *info[child]), caller)
        if conn.execute(Q.EDGE_EXISTS, (parent, child)).fetchone():
            continue
        if reaches(conn, child, parent):
            raise InvalidInput(
                f"making {child} a continuation of {parent} would create a cycle",
                issues={issue_key: "continuations must not form a cycle"},
            )
        conn.execute(Q.INSERT_EDGE, (parent, child, parent))
        (name, queue) = conn.execute(Q.WAIT_ON_ONE_MORE, (now, child)).fetchone()
        if c_state == State.AVAILABLE:
            store_events(conn, now, T.waits_again([T.TaskRef(child, c_state, name, queue)]))
            info[child] = (State.INACTIVE, c_owner, None)


def remove_edges(
    conn: sqlite3.Connection,
    pairs: Sequence[tuple[str, str]],
    caller: Caller,
    now: float,
    *,
    issue_key: str = "continuations",
) -> None:
    """Stop each child waiting on its parent (only while the child is inactive)."""
    info = _load(conn, {i for pair in pairs for i in pair}, issue_key)
    for parent_id, child_id in pairs:
        parent = rules.End(parent_id, *info[parent_id])
        child = rules.End(child_id, *info[child_id])
        rules.check_unlink(parent, child, caller)
        if conn.execute(Q.DELETE_EDGE, (parent_id, child_id)).fetchone() is None:
            continue
        rules.check_unlinked_child(child)
        if rules.unlink_counts_down(parent):
            conn.execute(Q.WAIT_ON_ONE_LESS, (now, child_id))


def _load(
    conn: sqlite3.Connection, ids: set[str], issue_key: str
) -> dict[str, tuple[str, str, str | None]]:
    ordered = sorted(ids)
    info: dict[str, tuple[str, str, str | None]] = {}
    for part in chunks(ordered):
        for task_id, state, owner, exit_status in conn.execute(
            Q.EDGE_ENDS.format(ids=placeholders(len(part))), part
        ):
            info[task_id] = (state, owner, exit_status)
    missing = [i for i in ordered if i not in info]
    if missing:
        raise InvalidInput(
            f"unknown task {missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            issues={issue_key: f"unknown task {missing[0]}"},
        )
    return info
