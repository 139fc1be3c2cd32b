"""Task writes inside a PostgreSQL transaction: bulk creation and user
updates (fields, state changes, continuation edits). The rules are the
domain's (``server.domain.submit``, ``access``, ``transitions``)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from banyan.errors import InvalidInput, NotFound
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
from server.stores.postgres import graph
from server.stores.postgres import queries as Q
from server.stores.postgres.db import Tx, columns_of
from server.stores.postgres.rows import apply_changes, dumps, get_doc, new_etag


def _resource_columns(resources: Resources) -> tuple[str, float, int, int]:
    return dumps(resources.canonical()), resources.cores, resources.memory, resources.gpu_count


async def create_tasks(
    tx: Tx,
    items: Sequence[TaskCreate],
    caller: Caller,
    now: float,
    *,
    job_name: str | None = None,
) -> list[CreatedTask]:
    """Insert ``items`` all or nothing, as one job (``Store.create_tasks``)."""
    generated = iter(new_ids(sum(1 for i in items if i.id is None), now))
    ids = [item.id if item.id is not None else next(generated) for item in items]
    index: dict[str, int] = {}
    for i, task_id in enumerate(ids):
        if task_id in index:
            raise InvalidInput(f"duplicate _id {task_id}", issues={f"{i}._id": "duplicate id"})
        index[task_id] = i
    chosen = [i for i, item in zip(ids, items, strict=True) if item.id is not None]
    if chosen:
        taken = await tx.fetchrow(Q.FIRST_TAKEN_ID, chosen)
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
    await _check_external_children(tx, external, caller)
    check_acyclic(internal, index)

    pending: defaultdict[str, int] = defaultdict(int)
    for _, child in internal:
        pending[child] += 1
    ready: list[str] = []
    states: list[State] = []
    rows = []
    etags = []
    resource_cache: dict[str, tuple[str, float, int, int]] = {}
    for task_id, item in zip(ids, items, strict=True):
        state, ready_group = initial_state(item, pending[task_id])
        if ready_group:
            ready.append(task_id)
        states.append(state)
        etag = new_etag()
        etags.append(etag)
        key = item.requested_resources.model_dump_json()
        columns = resource_cache.get(key)
        if columns is None:
            columns = resource_cache[key] = _resource_columns(item.requested_resources)
        resources_json, cores, memory, gpus = columns
        rows.append(
            (
                task_id,
                item.name,
                item.command,
                state.value,
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
                item.time_limit,
                item.not_before,
                item.max_abandon_count,
            )
        )
    if ids:
        job = (ids[0], job_name if job_name is not None else items[0].name, caller.name, now)
        # Tasks nobody else can name yet (ids of ours, no edges, nothing to
        # make ready) are inserted with the batch's other such creates.
        alone = not chosen and not internal and not external and not ready
        if not (alone and tx.defer(Q.INSERT_JOB_AND_TASKS, rows, [job])):
            await tx.execute(Q.INSERT_JOB_AND_TASKS, *columns_of(rows), *columns_of([job]))
    await tx.executemany(
        Q.INSERT_CONTINUATION,
        [
            (parent, child, position)
            for parent, item in zip(ids, items, strict=True)
            for position, child in enumerate(item.continuations)
        ],
    )
    tx.add_events(
        now,
        (
            E.task_created(
                task_id,
                name=item.name,
                state=state.value,
                queue=item.queue,
                priority=item.priority,
                owner=caller.name,
                group=item.command is None,
                job=ids[0],
            )
            for task_id, item, state in zip(ids, items, states, strict=True)
        ),
    )
    for child, parents in external.items():
        previous, name, queue = await tx.fetchrow(Q.WAIT_ROW, child)
        await tx.execute(Q.WAIT_AGAIN, len(parents), now, child)
        tx.add_events(now, T.waits_again([T.TaskRef(child, previous, name, queue)]))
    if ready:
        await graph.make_ready(tx, ready, now)
        found = dict(await tx.fetch(Q.ETAGS_OF_IDS, ids))
        etags = [found[i] for i in ids]
    return [
        CreatedTask(_id=i, _etag=e, _created=now, job=ids[0])
        for i, e in zip(ids, etags, strict=True)
    ]


async def _check_external_children(
    tx: Tx, external: dict[str, list[tuple[int, str]]], caller: Caller
) -> None:
    children = sorted(external)
    if not children:
        return
    found = {
        task_id: (state, owner)
        for task_id, state, owner in await tx.fetch(Q.STATE_OWNER_OF_IDS, children)
    }
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


async def update_task(
    tx: Tx,
    task_id: str,
    patch: TaskPatch,
    caller: Caller,
    now: float,
    *,
    if_match: str | None,
    require_if_match: bool,
) -> dict[str, Any]:
    """Apply one PATCH: fields, then continuation edits, then the state change."""
    row = await tx.fetchrow(Q.PATCH_ROW, task_id)
    if row is None:
        raise NotFound(f"no task with id {task_id}")
    state, owner, etag, resources_json = row
    access.check_may_change(caller, task_id, owner)
    access.check_if_match(task_id, etag, if_match, required=require_if_match)
    changes = patch.model_dump(exclude_unset=True)
    access.check_editable(task_id, state, changes)
    await _update_fields(tx, task_id, changes, resources_json, now)
    if "continuations" in changes:
        current = [c for (c,) in await tx.fetch(Q.CHILDREN_OF, task_id)]
        wanted = changes["continuations"]
        await graph.remove_edges(
            tx, [(task_id, c) for c in current if c not in wanted], caller, now
        )
        await graph.add_edges(tx, [(task_id, c) for c in wanted if c not in current], caller, now)
    for key, change in (
        ("remove_continuations", graph.remove_edges),
        ("add_continuations", graph.add_edges),
    ):
        if changes.get(key):
            await change(tx, [(task_id, c) for c in changes[key]], caller, now, issue_key=key)
    if changes.get("state") is not None:
        await change_state_by_user(tx, task_id, State(changes["state"]), now)
    elif changes:
        await tx.execute(Q.TOUCH_TASK, now, task_id)
    return await get_doc(tx, task_id)


async def _update_fields(
    tx: Tx, task_id: str, changes: dict[str, Any], resources_json: str, now: float
) -> None:
    values: dict[str, Any] = {f: changes[f] for f in PLAIN_FIELDS if f in changes}
    casts: dict[str, str] = {}
    if "env" in changes:
        values["env"] = None if changes["env"] is None else dumps(changes["env"])
        casts["env"] = "::jsonb"
    if changes.get("requested_resources") is not None:
        try:
            merged = merge_resources(json.loads(resources_json), changes["requested_resources"])
        except ValidationError as exc:
            raise from_validation(exc, prefix="requested_resources.", what="update") from exc
        resources, cores, memory, gpus = _resource_columns(merged)
        values.update(requested_resources=resources, cores=cores, memory=memory, gpus=gpus)
        casts["requested_resources"] = "::jsonb"
    if values:
        # Field names come from PLAIN_FIELDS and the lines above, never from a request.
        sets = ", ".join(
            f"{field} = ${n}{casts.get(field, '')}" for n, field in enumerate(values, start=3)
        )
        await tx.execute(Q.UPDATE_TASK_FIELDS.format(sets=sets), now, task_id, *values.values())


async def change_state_by_user(tx: Tx, task_id: str, target: State, now: float) -> None:
    """A state change asked for by a provider or admin (``transitions.user_change``)."""
    state, pending, exit_status, name, queue = await tx.fetchrow(Q.USER_CHANGE_ROW, task_id)
    task = T.TaskRef(task_id, state, name, queue)
    plan = T.user_change(task, target, pending=pending, exit_status=exit_status)
    if plan.effect is Effect.ACTIVATE:
        await graph.make_ready(tx, [task_id], now)
    elif plan.effect is Effect.CANCEL:
        await graph.cancel_task(tx, task_id, now=now)
    elif plan.effect is Effect.REQUEST_CANCEL and plan.change is not None:
        await apply_changes(tx, [plan.change], now)
    elif plan.effect is Effect.RETRY:
        await tx.execute(Q.RESET_RETRIES, task_id)
        await tx.execute(Q.RESET_ABANDONS, task_id)
        await graph.make_ready(tx, [task_id], now)
        await graph.revive(tx, task_id, now)
