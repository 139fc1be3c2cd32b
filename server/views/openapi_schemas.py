"""The OpenAPI document's component schemas: the request bodies from the
same pydantic models the views validate with, plus the shapes of what the
API answers (Error, Task, Meta, Job)."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from banyan.models import (
    BulkPatchItem,
    ContinuationEdit,
    ExecutionUpdate,
    MemoryUsage,
    TaskCreate,
    TaskPatch,
)

REF = "#/components/schemas/{model}"
ID = {"type": "string", "pattern": "^[0-9a-fA-F]{24}$"}


def schemas() -> dict[str, Any]:
    _, defs = models_json_schema(
        [
            (m, "validation")
            for m in (
                TaskCreate,
                TaskPatch,
                BulkPatchItem,
                ContinuationEdit,
                MemoryUsage,
                ExecutionUpdate,
            )
        ],
        ref_template=REF,
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Error"] = {
        "type": "object",
        "required": ["_status", "_error"],
        "properties": {
            "_status": {"const": "ERR"},
            "_error": {
                "type": "object",
                "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
            },
            "_issues": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    schemas["Task"] = {
        "type": "object",
        "required": ["_id"],
        "additionalProperties": True,
        "properties": {"_id": ID, "state": {"type": "string"}},
    }
    schemas["Meta"] = {
        "type": "object",
        "required": ["_id", "_etag", "_status"],
        "properties": {
            "_id": ID,
            "_etag": {"type": "string"},
            "_status": {"type": "string"},
            "job": ID,
            "_warnings": {"type": "array", "items": {"type": "string"}},
        },
    }
    schemas["Job"] = {
        "type": "object",
        "description": "One POST /tasks: its id is its first task's id.",
        "required": ["_id", "owner", "total", "counts"],
        "properties": {
            "_id": {**ID, "description": "the job's id: its first task's id"},
            "name": {
                "type": ["string", "null"],
                "description": "?job_name= of the POST, else the first task's name",
            },
            "owner": {"type": "string", "description": "the token name that submitted it"},
            "total": {"type": "integer", "description": "how many tasks"},
            "counts": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
                "description": "tasks by state (states with none left out)",
            },
            "_created": {"type": "string", "description": "when it was submitted"},
            "time_started": {
                "type": ["string", "null"],
                "description": "when its first attempt started",
            },
            "time_ended": {
                "type": ["string", "null"],
                "description": "when its last task ended, once every task has",
            },
        },
    }
    return schemas
