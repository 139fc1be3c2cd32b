"""``/tasks``: submit (one or bulk), list and query, read, update (one or
bulk), continuation edits, attempt history. Views parse, call the store and
render; the domain errors map to responses in ``server.errors``."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from aiohttp import web
from pydantic import TypeAdapter

from banyan.constants import IDEMPOTENCY_HEADER
from banyan.errors import BadRequest, BanyanError, InvalidInput
from banyan.fields import TASK_FIELDS
from banyan.models import BulkPatchItem, ContinuationEdit, TaskCreate, TaskPatch
from server import render
from server.auth import ANY_ROLE, PROVIDERS, require
from server.domain import idempotency, secrets
from server.domain.idempotency import Encoded
from server.keys import STORE
from server.stores.base import CreatedTask
from server.views.common import (
    body,
    body_kind,
    check_bulk_size,
    collection_query,
    collection_response,
    expect_kind,
    item_projection,
    json_response,
    settings,
    single_arg,
    task_id,
    validate,
    validate_items,
)
from server.views.reasons import add_reasons, fit_warnings


def with_default_time_limit(item: TaskCreate, default_s: float | None) -> TaskCreate:
    """The server's ``default_time_limit_s`` for a task that names no
    ``time_limit`` (an explicit ``null`` means no limit)."""
    if default_s is None or "time_limit" in item.model_fields_set:
        return item
    return item.model_copy(update={"time_limit": default_s})


def with_default_time_limits(items: list[TaskCreate], default_s: float | None) -> list[TaskCreate]:
    """:func:`with_default_time_limit` of each item; an item shared by several
    places of the list (``validate_items``) is copied once."""
    if default_s is None:
        return items
    copies: dict[int, TaskCreate] = {}
    out = []
    for item in items:
        copy = copies.get(id(item))
        if copy is None:
            copy = copies[id(item)] = with_default_time_limit(item, default_s)
        out.append(copy)
    return out


_ONE = TypeAdapter(TaskCreate)
_MANY = TypeAdapter(list[TaskCreate])
_PATCH = TypeAdapter(TaskPatch)
_BULK_PATCH = TypeAdapter(list[BulkPatchItem])
_EDITS = TypeAdapter(list[ContinuationEdit])

routes = web.RouteTableDef()


@routes.post("/tasks")
async def create(request: web.Request) -> web.Response:
    """One task or a list, as one job (``?job_name=`` names it). Tasks no
    connected worker could ever run get a ``_warnings`` line each; with
    ``?require_fit=1`` they are refused (422) instead."""
    caller = await require(request, PROVIDERS)
    key = idempotency.parse_key(request.headers.get(IDEMPOTENCY_HEADER))
    data = await body(request)
    conf = settings(request)
    date_format = conf.date_format
    job_name = single_arg(request, "job_name")
    require_fit = _flag(request, "require_fit")
    single = body_kind(data) == "object"
    if single:
        items = [validate(_ONE, data, what="task")]
    else:
        items = validate_items(_ONE, _MANY, data, what="tasks")
        check_bulk_size(len(items), request)
    items = with_default_time_limits(items, conf.default_time_limit_s)
    # The fit check reads the connected workers now. Without a key a refusal
    # comes before anything is made; with one it is raised from respond, which
    # runs only when the key is new, so a retry of a request that was taken
    # replays its stored answer even if the workers have changed since.
    refusal: InvalidInput | None = None
    try:
        warnings = await fit_warnings(request, items, single=single, refuse=require_fit)
    except InvalidInput as exc:
        if key is None:
            raise
        refusal, warnings = exc, []
    extra: dict[str, Any] = {"_warnings": warnings} if warnings else {}

    def respond(created: list[CreatedTask]) -> tuple[int, Any]:
        # The whole answer (job, _warnings) is what a keyed submit stores, so
        # a replay is the same answer.
        if refusal is not None:
            raise refusal
        if single:
            return 201, {**render.meta(created[0], date_format), **extra}
        # As json_response would write {"_status", "_items", "job", **extra}.
        job = json.dumps(created[0]["job"] if created else None)
        tail = "".join(f",{json.dumps(k)}:{_compact(v)}" for k, v in extra.items())
        items = render.metas_json(created, date_format)
        return 201, Encoded(f'{{"_status":"OK","_items":{items},"job":{job}{tail}}}')

    store = request.app[STORE]
    try:
        if key is None:
            status, out = respond(await store.create_tasks(items, caller, job_name=job_name))
            return json_response(out, status=status)
        submission = idempotency.Submission(
            key=key,
            request_hash=idempotency.request_hash(
                data, {"job_name": job_name, "require_fit": require_fit}
            ),
            retention_s=conf.idempotency_retention_s,
        )
        answer = await store.create_tasks_once(
            items, caller, submission, respond, job_name=job_name
        )
    except BanyanError as exc:
        if single:  # issues name the fields of the one task, not "0.<field>"
            exc.issues = {k.removeprefix("0."): v for k, v in exc.issues.items()}
        raise
    headers = {idempotency.REPLAYED_HEADER: "true"} if answer.replayed else None
    return json_response(answer.body, status=answer.status, headers=headers)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _flag(request: web.Request, name: str) -> bool:
    value = single_arg(request, name)
    if value is None:
        return False
    if value.lower() in ("1", "true", "yes", ""):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise BadRequest(f"{name} must be 1 or 0, not {value!r}")


@routes.get("/tasks")
async def find(request: web.Request) -> web.Response:
    caller = await require(request, ANY_ROLE)
    query, projection = collection_query(request, TASK_FIELDS)
    # A where on env values must not probe other users' secrets.
    query = replace(query, where=secrets.scope_where(query.where, caller))
    page = await request.app[STORE].find_tasks(query)
    date_format = settings(request).date_format
    items = [render.task(doc, date_format, projection, viewer=caller) for doc in page.items]
    if _flag(request, "reasons"):
        await add_reasons(request, page.items, items)
    return collection_response(request, query, items, total=page.total, resource="tasks")


@routes.get("/tasks/{task_id}")
async def read(request: web.Request) -> web.Response:
    caller = await require(request, ANY_ROLE)
    projection = item_projection(request, TASK_FIELDS)
    doc = await request.app[STORE].get_task(task_id(request))
    if request.headers.get("If-None-Match", "").strip('"') == doc["_etag"]:
        return web.Response(status=304, headers={"ETag": f'"{doc["_etag"]}"'})
    return json_response(
        render.task(doc, settings(request).date_format, projection, viewer=caller),
        headers={"ETag": f'"{doc["_etag"]}"'},
    )


@routes.patch("/tasks/{task_id}")
async def update(request: web.Request) -> web.Response:
    caller = await require(request, PROVIDERS)
    the_id = task_id(request)
    data = await body(request)
    expect_kind(data, "object")
    patch = validate(_PATCH, data, what="update")
    doc = await request.app[STORE].update_task(
        the_id, patch, caller, if_match=request.headers.get("If-Match")
    )
    out = render.task(doc, settings(request).date_format, viewer=caller)
    out["_status"] = "OK"
    return json_response(out, headers={"ETag": f'"{doc["_etag"]}"'})


@routes.patch("/tasks")
async def update_many(request: web.Request) -> web.Response:
    caller = await require(request, PROVIDERS)
    data = await body(request)
    expect_kind(data, "list")
    items = validate(_BULK_PATCH, data, what="updates")
    check_bulk_size(len(items), request)
    results = await request.app[STORE].update_tasks(items, caller)
    date_format = settings(request).date_format
    out: list[dict[str, Any]] = []
    for result in results:
        if result.doc is not None:
            out.append({**render.task(result.doc, date_format, viewer=caller), "_status": "OK"})
        else:
            error = (
                result.error
                if isinstance(result.error, BanyanError)
                else BanyanError("internal error")
            )
            out.append({"_id": result.task_id, **error.to_eve()})
    status = "OK" if all(r.error is None for r in results) else "ERR"
    return json_response({"_status": status, "_items": out})


async def _edit(request: web.Request, *, add: bool) -> web.Response:
    caller = await require(request, PROVIDERS)
    data = await body(request)
    expect_kind(data, "list")
    edits = validate(_EDITS, data, what="continuation edits")
    check_bulk_size(len(edits), request)
    await request.app[STORE].edit_continuations(edits, caller, add=add)
    return json_response({"_status": "OK"})


@routes.post("/tasks/add_continuations")
async def add_continuations(request: web.Request) -> web.Response:
    return await _edit(request, add=True)


@routes.post("/tasks/remove_continuations")
async def remove_continuations(request: web.Request) -> web.Response:
    return await _edit(request, add=False)


@routes.get("/tasks/{task_id}/history")
async def history(request: web.Request) -> web.Response:
    await require(request, ANY_ROLE)
    attempts = await request.app[STORE].history(task_id(request))
    date_format = settings(request).date_format
    return json_response({"_items": [render.attempt(a, date_format) for a in attempts]})
