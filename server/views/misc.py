"""``/`` (the home: links to the resources, as Eve's home endpoint), ``/health``
(no token), ``/memory_usage`` (workers write, anyone reads)."""

from __future__ import annotations

from aiohttp import web
from pydantic import TypeAdapter

from banyan.errors import BanyanError
from banyan.fields import MEMORY_USAGE_FIELDS
from banyan.models import MemoryUsage
from server import render
from server.auth import ANY_ROLE, WORKERS, require
from server.dbwatch import WATCH
from server.feed import parse_since
from server.keys import FEED, STORE
from server.views.common import (
    body,
    body_kind,
    check_bulk_size,
    collection_query,
    collection_response,
    json_response,
    settings,
    single_arg,
    validate,
)

_ONE = TypeAdapter(MemoryUsage)
_MANY = TypeAdapter(list[MemoryUsage])

routes = web.RouteTableDef()

# What the home lists: every response links "/" as its parent.
HOME_CHILDREN = ("tasks", "jobs", "workers", "memory_usage", "stats")


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    await require(request, ANY_ROLE)
    return json_response({"_links": {"child": [{"href": r, "title": r} for r in HOME_CHILDREN]}})


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    """``ok`` (200); ``degraded`` (503) with ``reasons`` while writes fail or
    cannot be kept (``server.dbwatch``); ``error`` (503) when the store fails."""
    try:
        state = await request.app[STORE].health()
    except BanyanError as exc:
        return json_response({"status": "error", "reasons": [exc.message]}, status=503)
    watch = request.app.get(WATCH)
    reasons = await watch.check() if watch is not None else []
    status = "error" if not state.ok else "degraded" if reasons else "ok"
    body = {"status": status, "schema_version": state.schema_version, **state.details}
    if reasons:
        body["reasons"] = reasons
    return json_response(body, status=200 if status == "ok" else 503)


@routes.get("/events")
async def events(request: web.Request) -> web.StreamResponse:
    caller = await require(request, ANY_ROLE)
    since = parse_since(single_arg(request, "since"))
    return await request.app[FEED].handle(request, since, token=caller.name)


@routes.post("/memory_usage")
async def add_memory_usage(request: web.Request) -> web.Response:
    caller = await require(request, WORKERS)
    data = await body(request)
    if body_kind(data) == "object":
        records = [validate(_ONE, data, what="memory usage record")]
    else:
        records = validate(_MANY, data, what="memory usage records")
        check_bulk_size(len(records), request)
    stored = await request.app[STORE].add_memory_usage(records, caller)
    return json_response({"_status": "OK", "stored": stored}, status=201)


@routes.get("/memory_usage")
async def find_memory_usage(request: web.Request) -> web.Response:
    await require(request, ANY_ROLE)
    query, projection = collection_query(request, MEMORY_USAGE_FIELDS)
    page = await request.app[STORE].find_memory_usage(query)
    date_format = settings(request).date_format
    items = [projection.apply(render.memory_usage(doc, date_format)) for doc in page.items]
    return collection_response(request, query, items, total=page.total, resource="memory_usage")
