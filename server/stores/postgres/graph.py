"""The continuation graph inside a write transaction on PostgreSQL: adding
and removing edges, settling continuations when a parent ends (the rules are
``server.domain.dependencies``, ``server.domain.graph`` and
``server.domain.transitions``), and reviving a cascade when its root is
retried. Each function appends the events for what it changed."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from banyan.dependencies import SKIPPED
from banyan.errors import InvalidInput
from banyan.states import State
from banyan.tokens import Caller
from server.domain import dependencies as D
from server.domain import graph as rules
from server.domain import transitions as T
from server.stores.postgres import queries as Q
from server.stores.postgres.db import Tx
from server.stores.postgres.rows import apply_changes


async def make_ready(tx: Tx, ids: Iterable[str], now: float) -> None:
    """Tasks whose dependencies are met become available (a group task succeeds)."""
    await settle(tx, ready=ids, origin=None, now=now)


async def settle(
    tx: Tx,
    ended: Iterable[tuple[str, D.Result]] = (),
    *,
    ready: Iterable[str] = (),
    origin: str | None,
    now: float,
) -> list[str]:
    """As ``server.stores.sqlite.graph.settle``: each open edge of the tasks
    that ended or became ready is settled by the domain's rules, and what that
    ends in turn is settled too. Returns the running tasks asked to stop."""
    queue: deque[tuple[str, D.Result, str]] = deque((i, r, origin or i) for i, r in ended)
    to_start = list(ready)
    stopping: list[str] = []
    while queue or to_start:
        while to_start:
            task_id = to_start.pop()
            command, state, name, task_queue = await tx.fetchrow(Q.READY_ROW, task_id)
            change = T.activate(T.TaskRef(task_id, state, name, task_queue), group=command is None)
            await apply_changes(tx, [change], now)
            if change.releases:
                queue.append((task_id, D.Result.SUCCEEDED, task_id))
        if not queue:
            continue
        parent, result, cause = queue.popleft()
        cancel: list[T.TaskRef] = []
        for child, state, name, task_queue, run_when in await tx.fetch(Q.OPEN_EDGES, parent):
            ref = T.TaskRef(child, state, name, task_queue)
            if D.on_parent_end(run_when, result) is D.Step.CANCEL:
                cancel.append(ref)
                continue
            await tx.execute(Q.RELEASE_EDGE, parent, child)
            pending = await tx.fetchval(Q.WAIT_ON_ONE_LESS_RETURNING, now, child)
            if pending or state != State.INACTIVE:
                continue
            failed = await tx.fetchrow(Q.A_PARENT_FAILED, child, SKIPPED) is not None
            if D.runs_when_released(run_when, a_parent_failed=failed):
                to_start.append(child)
            else:
                await apply_changes(tx, [T.skip(ref)], now)
                queue.append((child, D.Result.SKIPPED, child))
        changes = T.cascade_cancel(cancel, origin=cause)
        await apply_changes(tx, changes, now)
        for change in changes:
            if change.kind is T.Kind.CANCELLED:
                queue.append((change.task.id, D.Result.FAILED, cause))
            else:
                stopping.append(change.task.id)
    return stopping


async def cancel_task(tx: Tx, task_id: str, *, now: float) -> list[str]:
    """A user cancels a task that has not started; its continuations follow their kinds."""
    _, state, name, task_queue = await tx.fetchrow(Q.READY_ROW, task_id)
    changes = T.cascade_cancel([T.TaskRef(task_id, state, name, task_queue)], origin=task_id)
    await apply_changes(tx, changes, now)
    ended = [(c.task.id, D.Result.FAILED) for c in changes if c.kind is T.Kind.CANCELLED]
    stopping = [c.task.id for c in changes if c.kind is T.Kind.STOPPING]
    return stopping + await settle(tx, ended, origin=task_id, now=now)


async def revive(tx: Tx, root: str, now: float) -> None:
    """Undo the cascade ``root`` started: what it cancelled before it ran waits again."""
    rows = await tx.fetch(Q.REVIVABLE, root)
    changes, ready = T.revive(
        (T.TaskRef(i, State.CANCELLED, n, q), pending) for i, n, q, pending in rows
    )
    await apply_changes(tx, changes, now)
    await make_ready(tx, ready, now)


async def reaches(tx: Tx, start: str, goal: str) -> bool:
    """Is ``goal`` downstream of (or equal to) ``start``?"""
    return start == goal or await tx.fetchrow(Q.REACHES, start, goal) is not None


async def add_edges(
    tx: Tx,
    pairs: Sequence[tuple[str, str]],
    caller: Caller,
    now: float,
    *,
    issue_key: str = "continuations",
) -> None:
    """Make each child a continuation of its parent."""
    info = await _load(tx, {i for pair in pairs for i in pair}, issue_key)
    ended: dict[str, D.Result] = {}
    for parent, child in pairs:
        c_state, c_owner, _ = info[child]
        rules.check_link(rules.End(parent, *info[parent]), rules.End(child, *info[child]), caller)
        if await tx.fetchrow(Q.EDGE_EXISTS, parent, child):
            continue
        if await reaches(tx, child, parent):
            raise InvalidInput(
                f"making {child} a continuation of {parent} would create a cycle",
                issues={issue_key: "continuations must not form a cycle"},
            )
        await tx.execute(Q.INSERT_EDGE, parent, child)
        name, queue = await tx.fetchrow(Q.WAIT_ON_ONE_MORE, now, child)
        if c_state == State.AVAILABLE:
            tx.add_events(now, T.waits_again([T.TaskRef(child, c_state, name, queue)]))
            info[child] = (State.INACTIVE, c_owner, None)
        p_state, _, p_exit = info[parent]
        result = D.result_of(p_state, p_exit)
        if result is not None:
            ended[parent] = result
    # A parent that has already ended is decided once every edge is in.
    if ended:
        await settle(tx, ended.items(), origin=None, now=now)


async def remove_edges(
    tx: Tx,
    pairs: Sequence[tuple[str, str]],
    caller: Caller,
    now: float,
    *,
    issue_key: str = "continuations",
) -> None:
    """Stop each child waiting on its parent (only while the child is inactive)."""
    info = await _load(tx, {i for pair in pairs for i in pair}, issue_key)
    for parent_id, child_id in pairs:
        parent = rules.End(parent_id, *info[parent_id])
        child = rules.End(child_id, *info[child_id])
        rules.check_unlink(parent, child, caller)
        deleted = await tx.fetchrow(Q.DELETE_EDGE, parent_id, child_id)
        if deleted is None:
            continue
        rules.check_unlinked_child(child)
        if rules.unlink_counts_down(released=bool(deleted[0])):
            await tx.execute(Q.WAIT_ON_ONE_LESS, now, child_id)


async def _load(tx: Tx, ids: set[str], issue_key: str) -> dict[str, tuple[str, str, str | None]]:
    ordered = sorted(ids)
    info = {
        task_id: (state, owner, exit_status)
        for task_id, state, owner, exit_status in await tx.fetch(Q.EDGE_ENDS, ordered)
    }
    missing = [i for i in ordered if i not in info]
    if missing:
        raise InvalidInput(
            f"unknown task {missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            issues={issue_key: f"unknown task {missing[0]}"},
        )
    return info
