"""``/openapi.json`` describes exactly the routes the server has."""

from __future__ import annotations

import json
import re

from aiohttp import web

from banyan.models import NOT_NULL_PATCH_FIELDS
from tests.conftest import Api


def served_routes(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS", "*"):
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        routes.add((route.method.lower(), str(path)))
    return routes


async def test_every_route_is_described_and_nothing_else(api: Api) -> None:
    resp = await api.get("/openapi.json")
    assert resp.status == 200
    doc = resp.body
    assert doc["openapi"].startswith("3.")
    described = {
        (method, path)
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "post", "patch", "put", "delete")
    }
    assert described == served_routes(api.client.app)


async def test_schemas_resolve_and_name_the_models(api: Api) -> None:
    doc = (await api.get("/openapi.json")).body
    text = str(doc)
    refs = set(re.findall(r"#/components/schemas/([A-Za-z0-9_]+)", text))
    assert refs <= set(doc["components"]["schemas"])
    task = doc["components"]["schemas"]["TaskCreate"]
    assert task["additionalProperties"] is False
    assert {"command", "requested_resources", "continuations", "state"} <= set(task["properties"])


async def test_openapi_needs_a_token(api: Api) -> None:
    assert (await api.get("/openapi.json", as_=None)).status == 401


# Found by schemathesis (tests/fuzz): the document said OpenAPI 3.0.3 while its
# schemas are JSON Schema 2020-12 as pydantic writes them (numeric
# exclusiveMinimum, "type": "null"), which 3.0 tools read as invalid draft 4.
async def test_openapi_version_matches_the_json_schema_dialect(api: Api) -> None:
    doc = (await api.get("/openapi.json")).body
    assert doc["openapi"].startswith("3.1."), doc["openapi"]
    text = json.dumps(doc)
    assert '"exclusiveMinimum": 0' in text and '{"type": "null"}' in text


# Found by schemathesis: a single POST /tasks answer matched both branches of
# the 201 oneOf (the bulk branch required nothing).
async def test_created_response_branches_are_exclusive(api: Api) -> None:
    doc = (await api.get("/openapi.json")).body
    created = doc["paths"]["/tasks"]["post"]["responses"]["201"]["content"]["application/json"]
    single, bulk = created["schema"]["oneOf"]
    assert single == {"$ref": "#/components/schemas/Meta"}
    assert set(bulk["required"]) == {"_items", "_status"}
    assert "_id" in doc["components"]["schemas"]["Meta"]["required"]


async def test_patch_documents_which_fields_take_null(api: Api) -> None:
    schemas = (await api.get("/openapi.json")).body["components"]["schemas"]
    for model in ("TaskPatch", "BulkPatchItem"):
        props = schemas[model]["properties"]
        for field in NOT_NULL_PATCH_FIELDS:
            assert '"null"' not in json.dumps(props[field]), (model, field, props[field])
        for field in ("name", "command", "estimated_runtime", "env", "cwd"):
            assert '"null"' in json.dumps(props[field]), (model, field)


async def test_the_home_every_parent_link_points_to_lists_the_resources(api: Api) -> None:
    parent = (await api.get("/tasks")).body["_links"]["parent"]["href"]
    home = await api.get(parent)
    assert home.status == 200, home
    children = home.body["_links"]["child"]
    assert {"href": "tasks", "title": "tasks"} in children
    for child in children:  # each one is served
        assert (await api.get("/" + child["href"])).status == 200, child
    assert (await api.get("/", as_=None)).status == 401
    doc = (await api.get("/openapi.json")).body
    assert "get" in doc["paths"]["/"]
