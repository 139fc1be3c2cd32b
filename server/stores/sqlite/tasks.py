"""Task writes inside a transaction: bulk creation and user updates
(fields, state changes, continuation edits). Claims and reports live in
``attempts.py``; the graph walks in ``graph.py``.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from banyan.constants import DEFAULT_MAX_ABANDON_COUNT
from banyan.errors import (
    InvalidInput,
    NotFound,
)
from banyan.events import encode_data
from banyan.ids import new_ids
from banyan.models import TaskCreate, TaskPatch
from banyan.resources import Resources, merge_resources
from banyan.states import Effect, State
from banyan.tokens import Caller
from banyan.validation import from_validation
from server.domain import access, idempotency
from server.domain import events as E
from server.domain import transitions as T
from server.domain.submit import (
    PLAIN_FIELDS,
    check_acyclic,
    check_new_continuation,
    initial_state,
)
from server.stores.base import CreatedTask
from server.stores.sqlite import graph
from server.stores.sqlite import queries as Q
from server.stores.sqlite.changes import apply_changes
from server.stores.sqlite.rows import (
    chunks,
    dumps,
    get_doc,
    new_etag,
    placeholders,
    store_encoded_events,
    store_events,
)

_PLAIN_FIELDS = PLAIN_FIELDS


def _resource_columns(resources: Resources) -> tuple[str, float, int, int]:
    return dumps(resources.canonical()), resources.cores, resources.memory, resources.gpu_count


def create_tasks(
    conn: sqlite3.Connection,
    items: Sequence[TaskCreate],
    caller: Caller,
    now: float,
    *,
    job_name: str | None = None,
) -> list[CreatedTask]:
    """Insert ``items`` all or nothing, as one job; returns ``[{"_id", "_etag",
    "_created", "job"}]``.

    Continuations may point at existing tasks or at other items of the same
    request (by client-chosen ``_id``), so a whole tree fits in one POST. The
    job's id is the first task's id; its name ``job_name``, else the first
    task's name.
    """
    generated = iter(new_ids(sum(1 for i in items if i.id is None), now))
    ids = [item.id if item.id is not None else next(generated) for item in items]
    index: dict[str, int] = {}
    for i, task_id in enumerate(ids):
        if task_id in index:
            raise InvalidInput(f"duplicate _id {task_id}", issues={f"{i}._id": "duplicate id"})
        index[task_id] = i
    chosen = [i for i, item in zip(ids, items, strict=True) if item.id is not None]
    for part in chunks(chosen):
        taken = conn.execute(Q.FIRST_TAKEN_ID.format(ids=placeholders(len(part))), part).fetchone()
        if taken:
            raise idempotency.id_taken(taken[0], taken[1], caller, index[taken[0]])

    internal: list[tuple[str, str]] = []
    external: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for i, (parent, item) in enumerate(zip(ids, items, strict=True)):
        for child in item.continuations:
            if child in index:
                internal.append((parent, child))
            else:
                external[child].append((i, parent))
    _check_external_children(conn, external, caller)
    _check_acyclic(internal, index)

    pending: defaultdict[str, int] = defaultdict(int)
    for _, child in internal:
        pending[child] += 1
    ready: list[str] = []
    states: list[State] = []
    rows = []
    etags = []
    # Bulk submissions mostly repeat one request: serialise each distinct one once.
    resource_cache: dict[str, tuple[str, float, int, int]] = {}
    resource_by_object: dict[int, tuple[str, float, int, int]] = {}
    for task_id, item in zip(ids, items, strict=True):
        # A ready group task succeeds at once: inserted inactive, resolved below.
        state, ready_group = initial_state(item, pending[task_id])
        if ready_group:
            ready.append(task_id)
        states.append(state)
        etag = new_etag()
        etags.append(etag)
        request = item.requested_resources
        # Equal items of a bulk list share one object (``validate_items``).
        columns = resource_by_object.get(id(request))
        if columns is None:
            key = request.model_dump_json()
            columns = resource_cache.get(key)
            if columns is None:
                columns = resource_cache[key] = _resource_columns(request)
            resource_by_object[id(request)] = columns
        resources_json, cores, memory, gpus = columns
        rows.append(
            (
                task_id,
                item.name,
                item.command,
                state,
                item.queue,
                item.priority,
                item.max_retry_count,
                pending[task_id],
                item.max_termination_time,
                item.estimated_runtime,
                resources_json,
                cores,
                memory,
                gpus,
                None if item.env is None else dumps(item.env),
                item.cwd,
                caller.name,
                now,
                now,
                etag,
                ids[0],
                item.run_when.value,
            )
        )
    job = ids[0] if ids else None
    if job is not None:
        name = job_name if job_name is not None else items[0].name
        conn.execute(Q.INSERT_JOB, (job, name, caller.name, now))
    conn.executemany(Q.INSERT_TASK, rows)
    if job is not None:
        _count_new(conn, job, items, states)
    conn.executemany(Q.SET_TIME_AND_ABANDON, _time_and_abandon(ids, items))
    conn.executemany(
        Q.INSERT_CONTINUATION,
        [
            (parent, child, position)
            for parent, item in zip(ids, items, strict=True)
            for position, child in enumerate(item.continuations)
        ],
    )
    store_encoded_events(conn, now, _created_events(ids, items, states, caller))
    for child, parents in external.items():
        _wait_on(conn, child, len(parents), now)
    if ready:
        graph.make_ready(conn, ready, now)
        etags = _current_etags(conn, ids)
    return [
        CreatedTask(_id=i, _etag=e, _created=now, job=ids[0])
        for i, e in zip(ids, etags, strict=True)
    ]


def _count_new(
    conn: sqlite3.Connection, job: str, items: Sequence[TaskCreate], states: Sequence[State]
) -> None:
    """Count the new tasks of ``job`` in ``task_counts`` and ``job_counts``
    (what the state-change triggers keep up to date from here on)."""
    per_queue = Counter(
        (item.queue, state.value) for item, state in zip(items, states, strict=True)
    )
    per_state = Counter(state.value for state in states)
    conn.executemany(Q.ADD_TASK_COUNT, [(q, s, n) for (q, s), n in per_queue.items()])
    conn.executemany(Q.ADD_JOB_COUNT, [(job, s, n) for s, n in per_state.items()])
    conn.execute(Q.ADD_JOB_TOTAL, (len(states), job))


def _created_events(
    ids: Sequence[str], items: Sequence[TaskCreate], states: Sequence[State], caller: Caller
) -> Iterable[tuple[str, str | None, str]]:
    """The ``task.created`` events of a new job, encoded. Only the id differs
    between the events of equal items (a bulk list shares one object per
    distinct item) in the same state, and it leads the encoded data: the
    first is built by ``events.task_created``, the others get its tail after
    their own id (about a tenth of the cost on a list of one repeated task)."""
    tails: dict[tuple[int, State], tuple[str, str] | None] = {}
    for task_id, item, state in zip(ids, items, states, strict=True):
        key = (id(item), state)
        known = tails.get(key)
        if known is not None:
            kind, tail = known
            yield kind, task_id, f'{{"_id":"{task_id}"{tail}'
            continue
        event = E.task_created(
            task_id,
            name=item.name,
            state=state.value,
            queue=item.queue,
            priority=item.priority,
            owner=caller.name,
            group=item.command is None,
            job=ids[0],
        )
        data = encode_data(event)
        head = f'{{"_id":"{task_id}"'
        if key not in tails:
            tails[key] = (event.type, data[len(head) :]) if data.startswith(head) else None
        yield event.type, task_id, data


def _time_and_abandon(
    ids: Sequence[str], items: Sequence[TaskCreate]
) -> Iterable[tuple[float | None, float | None, int, str]]:
    """``time_limit``, ``not_before`` and ``max_abandon_count`` of the items that
    set them (the columns' defaults serve the rest)."""
    for task_id, item in zip(ids, items, strict=True):
        if (
            item.time_limit is not None
            or item.not_before is not None
            or item.max_abandon_count != DEFAULT_MAX_ABANDON_COUNT
        ):
            yield (item.time_limit, item.not_before, item.max_abandon_count, task_id)


def _check_external_children(
    conn: sqlite3.Connection, external: dict[str, list[tuple[int, str]]], caller: Caller
) -> None:
    children = sorted(external)
    found: dict[str, tuple[str, str]] = {}
    for part in chunks(children):
        for task_id, state, owner in conn.execute(
            Q.STATE_OWNER_OF_IDS.format(ids=placeholders(len(part))), part
        ):
            found[task_id] = (state, owner)
    for child in children:
        item = external[child][0][0]
        if child not in found:
            raise InvalidInput(
                f"unknown continuation {child}",
                issues={f"{item}.continuations": f"unknown task {child}"},
            )
        state, owner = found[child]
        access.check_may_link_child(caller, child, owner)
        check_new_continuation(child, state)


_check_acyclic = check_acyclic


def _wait_on(conn: sqlite3.Connection, child: str, parents: int, now: float) -> None:
    previous, name, queue = conn.execute(Q.WAIT_ROW, (child,)).fetchone()
    conn.execute(Q.WAIT_AGAIN, (parents, now, child))
    store_events(conn, now, T.waits_again([T.TaskRef(child, previous, name, queue)]))


def _current_etags(conn: sqlite3.Connection, ids: list[str]) -> list[str]:
    found: dict[str, str] = {}
    for part in chunks(ids):
        found.update(
            conn.execute(Q.ETAGS_OF_IDS.format(ids=placeholders(len(part))), part).fetchall()
        )
    return [found[i] for i in ids]


def update_task(
    conn: sqlite3.Connection,
    task_id: str,
    patch: TaskPatch,
    caller: Caller,
    now: float,
    *,
    if_match: str | None,
    require_if_match: bool,
) -> dict[str, Any]:
    """Apply one PATCH: fields, then continuation edits, then the state change."""
    row = conn.execute(Q.PATCH_ROW, (task_id,)).fetchone()
    if row is None:
        raise NotFound(f"no task with id {task_id}")
    state, owner, etag, resources_json = row
    access.check_may_change(caller, task_id, owner)
    access.check_if_match(task_id, etag, if_match, required=require_if_match)
    changes = patch.model_dump(exclude_unset=True)
    access.check_editable(task_id, state, changes)
    _update_fields(conn, task_id, changes, resources_json, now)
    if "continuations" in changes:
        current = [c for (c,) in conn.execute(Q.CHILDREN_OF, (task_id,))]
        wanted = changes["continuations"]
        graph.remove_edges(conn, [(task_id, c) for c in current if c not in wanted], caller, now)
        graph.add_edges(conn, [(task_id, c) for c in wanted if c not in current], caller, now)
    if changes.get("remove_continuations"):
        graph.remove_edges(
            conn,
            [(task_id, c) for c in changes["remove_continuations"]],
            caller,
            now,
            issue_key="remove_continuations",
        )
    if changes.get("add_continuations"):
        graph.add_edges(
            conn,
            [(task_id, c) for c in changes["add_continuations"]],
            caller,
            now,
            issue_key="add_continuations",
        )
    if changes.get("state") is not None:
        change_state_by_user(conn, task_id, State(changes["state"]), now)
    elif changes:
        conn.execute(Q.TOUCH_TASK, (now, task_id))
    return get_doc(conn, task_id)


def _update_fields(
    conn: sqlite3.Connection,
    task_id: str,
    changes: dict[str, Any],
    resources_json: str,
    now: float,
) -> None:
    sets: list[str] = []
    values: list[Any] = []
    for field in _PLAIN_FIELDS:
        if field in changes:
            sets.append(f"{field} = ?")
            values.append(changes[field])
    if "env" in changes:
        sets.append("env = ?")
        values.append(None if changes["env"] is None else dumps(changes["env"]))
    if changes.get("requested_resources") is not None:
        try:
            merged = merge_resources(json.loads(resources_json), changes["requested_resources"])
        except ValidationError as exc:
            raise from_validation(exc, prefix="requested_resources.", what="update") from exc
        resources, cores, memory, gpus = _resource_columns(merged)
        sets += ["requested_resources = ?", "cores = ?", "memory = ?", "gpus = ?"]
        values += [resources, cores, memory, gpus]
    if sets:
        conn.execute(
            Q.UPDATE_TASK_FIELDS.format(sets=", ".join(sets)),
            (*values, now, task_id),
        )


def change_state_by_user(conn: sqlite3.Connection, task_id: str, target: State, now: float) -> None:
    """A state change asked for by a provider or admin (``transitions.user_change``)."""
    state, pending, exit_status, name, queue = conn.execute(
        Q.USER_CHANGE_ROW, (task_id,)
    ).fetchone()
    task = T.TaskRef(task_id, state, name, queue)
    plan = T.user_change(task, target, pending=pending, exit_status=exit_status)
    if plan.effect is Effect.ACTIVATE:
        graph.make_ready(conn, [task_id], now)
    elif plan.effect is Effect.CANCEL:
        graph.cancel_task(conn, task_id, now=now)
    elif plan.effect is Effect.REQUEST_CANCEL and plan.change is not None:
        apply_changes(conn, [plan.change], now)
    elif plan.effect is Effect.RETRY:
        conn.execute(Q.RESET_RETRIES, (task_id,))
        conn.execute(Q.RESET_ABANDONS, (task_id,))
        graph.make_ready(conn, [task_id], now)
        graph.revive(conn, task_id, now)


def get_task_row(conn: sqlite3.Connection, task_id: str) -> Sequence[Any]:
    row = conn.execute(Q.TASK_BY_ID, (task_id,)).fetchone()
    if row is None:
        raise NotFound(f"no task with id {task_id}")
    return row  # type: ignore[no-any-return]
