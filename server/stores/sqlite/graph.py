"""The continuation graph inside a write transaction: adding and removing
edges (with cycle and state checks), settling continuations when a parent
ends (``server.domain.dependencies``: released, cancelled or skipped), and
reviving a cascade when its root is retried.

Every function here runs on the writer connection inside the caller's
transaction and appends the events for what it changed.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Iterable, Sequence

from banyan.dependencies import SKIPPED
from banyan.errors import InvalidInput
from banyan.states import State
from banyan.tokens import Caller
from server.domain import dependencies as D
from server.domain import graph as rules
from server.domain import transitions as T
from server.stores.sqlite import queries as Q
from server.stores.sqlite.changes import apply_changes
from server.stores.sqlite.rows import chunks, placeholders, store_events


def make_ready(conn: sqlite3.Connection, ids: Iterable[str], now: float) -> None:
    """Tasks whose dependencies are all met become available; a group task
    (no command) instead succeeds at once and releases its own continuations
    (``transitions.activate``)."""
    settle(conn, ready=ids, origin=None, now=now)


def settle(
    conn: sqlite3.Connection,
    ended: Iterable[tuple[str, D.Result]] = (),
    *,
    ready: Iterable[str] = (),
    origin: str | None,
    now: float,
) -> list[str]:
    """Tasks that ended (``ended``) or became ready (``ready``): each open edge
    to their continuations is settled by ``server.domain.dependencies``, and
    whatever that ends in turn (a cancelled or skipped child, a group task that
    succeeds) is settled as well. ``origin`` is kept on the tasks cancelled, so
    that a retry of it revives them (each ended task itself when None; a
    skipped task is the origin of what its skip cancels). Returns the running
    tasks asked to stop."""
    queue: deque[tuple[str, D.Result, str]] = deque((i, r, origin or i) for i, r in ended)
    to_start = list(ready)
    stopping: list[str] = []
    while queue or to_start:
        while to_start:
            task_id = to_start.pop()
            command, state, name, task_queue = conn.execute(Q.READY_ROW, (task_id,)).fetchone()
            change = T.activate(T.TaskRef(task_id, state, name, task_queue), group=command is None)
            apply_changes(conn, [change], now)
            if change.releases:
                queue.append((task_id, D.Result.SUCCEEDED, task_id))
        if not queue:
            continue
        parent, result, cause = queue.popleft()
        cancel: list[T.TaskRef] = []
        for child, state, name, task_queue, run_when in conn.execute(
            Q.OPEN_EDGES, (parent,)
        ).fetchall():
            ref = T.TaskRef(child, state, name, task_queue)
            if D.on_parent_end(run_when, result) is D.Step.CANCEL:
                cancel.append(ref)
                continue
            conn.execute(Q.RELEASE_EDGE, (parent, child))
            (pending,) = conn.execute(Q.WAIT_ON_ONE_LESS_RETURNING, (now, child)).fetchone()
            if pending or state != State.INACTIVE:
                continue
            failed = conn.execute(Q.A_PARENT_FAILED, (child, SKIPPED)).fetchone() is not None
            if D.runs_when_released(run_when, a_parent_failed=failed):
                to_start.append(child)
            else:
                apply_changes(conn, [T.skip(ref)], now)
                queue.append((child, D.Result.SKIPPED, child))
        changes = T.cascade_cancel(cancel, origin=cause)
        apply_changes(conn, changes, now)
        for change in changes:
            if change.kind is T.Kind.CANCELLED:
                queue.append((change.task.id, D.Result.FAILED, cause))
            else:
                stopping.append(change.task.id)
    return stopping


def cancel_task(conn: sqlite3.Connection, task_id: str, *, now: float) -> list[str]:
    """A user cancels a task that has not started: it ends, and its
    continuations follow their kinds (a ``success`` child is cancelled in turn,
    a ``finished`` or ``failure`` one counts it as failed). Returns the running
    tasks asked to stop."""
    row = conn.execute(Q.READY_ROW, (task_id,)).fetchone()
    _, state, name, task_queue = row
    changes = T.cascade_cancel([T.TaskRef(task_id, state, name, task_queue)], origin=task_id)
    apply_changes(conn, changes, now)
    ended = [(c.task.id, D.Result.FAILED) for c in changes if c.kind is T.Kind.CANCELLED]
    stopping = [c.task.id for c in changes if c.kind is T.Kind.STOPPING]
    return stopping + settle(conn, ended, origin=task_id, now=now)


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
    ended: dict[str, D.Result] = {}
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
        p_state, _, p_exit = info[parent]
        result = D.result_of(p_state, p_exit)
        if result is not None:
            ended[parent] = result
    # A parent that has already ended is decided now, once every edge is in
    # (a failure child needs all of its parents to see whether one failed).
    if ended:
        settle(conn, ended.items(), origin=None, now=now)


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
        deleted = conn.execute(Q.DELETE_EDGE, (parent_id, child_id)).fetchone()
        if deleted is None:
            continue
        rules.check_unlinked_child(child)
        if rules.unlink_counts_down(released=bool(deleted[0])):
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
