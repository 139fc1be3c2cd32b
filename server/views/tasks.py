"""``/tasks``: submit (one or bulk), list and query, read, update (one or
bulk), continuation edits, attempt history. Views parse, call the store and
render; the domain errors map to responses in ``server.errors``."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import TypeAdapter

from banyan.errors import BadRequest, BanyanError
from banyan.fields import TASK_FIELDS
from banyan.models import BulkPatchItem, ContinuationEdit, TaskCreate, TaskPatch
from server import render
from server.auth import ANY_ROLE, PROVIDERS, require
from server.keys import STORE
from server.views.common import (
    body,
    body_kind,
    check_bulk_size,
    collection_query,
    expect_kind,
    item_projection,
    json_response,
    settings,
    single_arg,
    task_id,
    validate,
)
from server.views.reasons import add_reasons, fit_warnings

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
    data = await body(request)
    date_format = settings(request).date_format
    job_name = single_arg(request, "job_name")
    require_fit = _flag(request, "require_fit")
    single = body_kind(data) == "object"
    if single:
        items = [validate(_ONE, data, what="task")]
    else:
        items = validate(_MANY, data, what="tasks")
        check_bulk_size(len(items), request)
    warnings = await fit_warnings(request, items, single=single, refuse=require_fit)
    try:
        created_all = await request.app[STORE].create_tasks(items, caller, job_name=job_name)
    except BanyanError as exc:
        if single:
            exc.issues = {k.removeprefix("0."): v for k, v in exc.issues.items()}
        raise
    extra: dict[str, Any] = {"_warnings": warnings} if warnings else {}
    if single:
        return json_response({**render.meta(created_all[0], date_format), **extra}, status=201)
    return json_response(
        {
            "_status": "OK",
            "_items": [render.meta(c, date_format) for c in created_all],
            "job": created_all[0]["job"] if created_all else None,
            **extra,
        },
        status=201,
    )


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
    await require(request, ANY_ROLE)
    query, projection = collection_query(request, TASK_FIELDS)
    page = await request.app[STORE].find_tasks(query)
    date_format = settings(request).date_format
    items = [render.task(doc, date_format, projection) for doc in page.items]
    if _flag(request, "reasons"):
        await add_reasons(request, page.items, items)
    return json_response(
        render.collection(
            items,
            resource="tasks",
            title="tasks",
            page=query.page,
            max_results=query.max_results,
            total=page.total,
            args=dict(request.rel_url.query),
        )
    )


@routes.get("/tasks/{task_id}")
async def read(request: web.Request) -> web.Response:
    await require(request, ANY_ROLE)
    projection = item_projection(request, TASK_FIELDS)
    doc = await request.app[STORE].get_task(task_id(request))
    if request.headers.get("If-None-Match", "").strip('"') == doc["_etag"]:
        return web.Response(status=304, headers={"ETag": f'"{doc["_etag"]}"'})
    return json_response(
        render.task(doc, settings(request).date_format, projection),
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
    out = render.task(doc, settings(request).date_format)
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
            out.append({**render.task(result.doc, date_format), "_status": "OK"})
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
