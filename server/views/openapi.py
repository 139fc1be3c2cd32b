"""``/openapi.json``: the API described from the same pydantic models the
views validate with, so the description cannot drift from the checks. The
component schemas are in ``openapi_schemas``, the paths in ``openapi_paths``."""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web
from pydantic import TypeAdapter

from server.auth import ANY_ROLE, require
from server.views import openapi_paths, openapi_schemas
from server.views.common import json_response

routes = web.RouteTableDef()


@functools.cache
def document() -> dict[str, Any]:
    schemas = openapi_schemas.schemas()
    paths = openapi_paths.paths()
    return {
        # 3.1: its schemas are JSON Schema 2020-12, which is what pydantic writes
        # (numeric exclusiveMinimum, "type": "null", const, propertyNames).
        "openapi": "3.1.0",
        "info": {
            "title": "Banyan",
            "version": "0.1.0",
            "description": "Distributed job queue; REST conventions of Python Eve.",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "the token as user name, no password",
                },
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"token": []}, {"bearer": []}],
        "paths": paths,
    }


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    await require(request, ANY_ROLE)
    return json_response(document())


__all__ = ["TypeAdapter", "document", "routes"]
