"""``/openapi.json`` describes exactly the routes the server has."""

from __future__ import annotations

import re

from aiohttp import web

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
