"""``/jobs``: the jobs (one per ``POST /tasks``: a bulk POST, an array, a
single submit), each with its name, owner, counts by state and time span."""

from __future__ import annotations

from aiohttp import web

from banyan.errors import NotFound
from banyan.fields import JOB_FIELDS
from banyan.ids import is_id
from server import render
from server.auth import ANY_ROLE, require
from server.keys import STORE
from server.views.common import collection_query, collection_response, json_response, settings

routes = web.RouteTableDef()


@routes.get("/jobs")
async def find(request: web.Request) -> web.Response:
    await require(request, ANY_ROLE)
    query, projection = collection_query(request, JOB_FIELDS)
    page = await request.app[STORE].find_jobs(query)
    date_format = settings(request).date_format
    items = [projection.apply(render.job(doc, date_format)) for doc in page.items]
    return collection_response(request, query, items, total=page.total, resource="jobs")


@routes.get("/jobs/{job_id}")
async def read(request: web.Request) -> web.Response:
    await require(request, ANY_ROLE)
    value = request.match_info["job_id"].lower()
    if not is_id(value):
        raise NotFound(f"no job with id {request.match_info['job_id']} (ids are 24 hex digits)")
    doc = await request.app[STORE].get_job(value)
    return json_response(render.job(doc, settings(request).date_format))
