"""The OpenAPI document's paths: every route with its parameters, bodies and
answers, referring to the component schemas of ``openapi_schemas``."""

from __future__ import annotations

from typing import Any

from server.views.openapi_schemas import ID, REF

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _responses(ok: int, ok_schema: dict[str, Any], *errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {str(ok): {"description": "success", "content": _json(ok_schema)}}
    for code in (401, 403, *errors):
        out[str(code)] = {"description": _REASONS[code], "content": _json(_ERROR)}
    return out


_REASONS = {
    400: "malformed JSON or query",
    401: "missing, unknown or revoked token",
    403: "wrong role or not your task",
    404: "no such task",
    409: "illegal in the current state",
    412: "If-Match does not match the _etag",
    413: "body too large",
    422: "invalid content (fields, units, cycles)",
    428: "If-Match required (strict mode)",
    503: "cannot write now",
    507: "disk full",
}

_QUERY_PARAMS = [
    {
        "name": "where",
        "in": "query",
        "schema": {"type": "string"},
        "description": 'Mongo-style JSON filter, e.g. {"retry_count": {"$lt": 10}}',
    },
    {
        "name": "projection",
        "in": "query",
        "schema": {"type": "string"},
        "description": 'JSON, e.g. {"name": 1} or {"command": 0}',
    },
    {
        "name": "sort",
        "in": "query",
        "schema": {"type": "string"},
        "description": '[("priority", -1)] or -priority,_id',
    },
    {"name": "max_results", "in": "query", "schema": {"type": "integer"}},
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
]
_TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": ID}
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": ID}
_FLAG = {"type": "string", "enum": ["1", "0", "true", "false", "yes", "no"]}
_SUBMIT_PARAMS = [
    {
        "name": "job_name",
        "in": "query",
        "schema": {"type": "string"},
        "description": "the name of the job this POST makes (default: the first task's name)",
    },
    {
        "name": "require_fit",
        "in": "query",
        "schema": _FLAG,
        "description": "refuse (422) tasks no connected worker could ever fit, instead of "
        "creating them with a _warnings line",
    },
]
_REASONS_PARAM = {
    "name": "reasons",
    "in": "query",
    "schema": _FLAG,
    "description": "each item carries _pending_reason {code, reason}, as "
    "/tasks/{task_id}/pending_reason gives it",
}


def _collection(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["_items", "_meta"],
        "properties": {
            "_items": {"type": "array", "items": item},
            "_meta": {
                "type": "object",
                "properties": {
                    "page": {"type": "integer"},
                    "max_results": {"type": "integer"},
                    "total": {"type": "integer"},
                },
            },
            "_links": {"type": "object"},
        },
    }


def paths() -> dict[str, Any]:
    task = {"$ref": REF.format(model="Task")}
    create_body = {
        "oneOf": [
            {"$ref": REF.format(model="TaskCreate")},
            {"type": "array", "items": {"$ref": REF.format(model="TaskCreate")}, "minItems": 1},
        ]
    }
    created = {
        "oneOf": [
            {"$ref": REF.format(model="Meta")},
            {
                "type": "object",
                "required": ["_items", "_status"],
                "properties": {
                    "_status": {"type": "string"},
                    "_items": {"type": "array", "items": {"$ref": REF.format(model="Meta")}},
                    "job": ID,
                    "_warnings": {"type": "array", "items": {"type": "string"}},
                },
            },
        ]
    }
    memory_body = {
        "oneOf": [
            {"$ref": REF.format(model="MemoryUsage")},
            {"type": "array", "items": {"$ref": REF.format(model="MemoryUsage")}, "minItems": 1},
        ]
    }
    edit_body = {
        "type": "array",
        "minItems": 1,
        "items": {"$ref": REF.format(model="ContinuationEdit")},
    }
    ok = {"type": "object", "properties": {"_status": {"type": "string"}}}
    paths: dict[str, Any] = {
        "/tasks": {
            "post": {
                "summary": "Submit one task or a list (all or nothing), as one job",
                "description": "With an Idempotency-Key header, a repeat of the same request "
                "(body, job_name and require_fit) by the same caller within "
                "idempotency_retention_s gets the original answer (job and _warnings "
                "included, and Idempotent-Replayed: true) and creates nothing; the same key "
                "with another request is 422.",
                "parameters": [
                    *_SUBMIT_PARAMS,
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    },
                ],
                "requestBody": {"required": True, "content": _json(create_body)},
                "responses": _responses(201, created, 400, 409, 413, 422, 503, 507),
            },
            "get": {
                "summary": "List and query tasks",
                "parameters": [*_QUERY_PARAMS, _REASONS_PARAM],
                "responses": _responses(200, _collection(task), 400),
            },
            "patch": {
                "summary": "Update many tasks; results per item",
                "requestBody": {
                    "required": True,
                    "content": _json(
                        {
                            "type": "array",
                            "minItems": 1,
                            "items": {"$ref": REF.format(model="BulkPatchItem")},
                        }
                    ),
                },
                "responses": _responses(200, ok, 400, 413, 422, 503, 507),
            },
        },
        "/tasks/{task_id}": {
            "parameters": [_TASK_ID],
            "get": {
                "summary": "One task (ETag header)",
                "parameters": [_QUERY_PARAMS[1]],
                "responses": _responses(200, task, 400, 404),
            },
            "patch": {
                "summary": "Update fields, state or continuations",
                "parameters": [{"name": "If-Match", "in": "header", "schema": {"type": "string"}}],
                "requestBody": {
                    "required": True,
                    "content": _json({"$ref": REF.format(model="TaskPatch")}),
                },
                "responses": _responses(200, task, 400, 404, 409, 412, 413, 422, 428, 503, 507),
            },
        },
        "/tasks/add_continuations": {
            "post": {
                "summary": "Add every value as a continuation of every target",
                "requestBody": {"required": True, "content": _json(edit_body)},
                "responses": _responses(200, ok, 400, 409, 413, 422, 503, 507),
            }
        },
        "/tasks/remove_continuations": {
            "post": {
                "summary": "Remove continuations (children must be inactive)",
                "requestBody": {"required": True, "content": _json(edit_body)},
                "responses": _responses(200, ok, 400, 409, 413, 422, 503, 507),
            }
        },
        "/tasks/{task_id}/history": {
            "parameters": [_TASK_ID],
            "get": {
                "summary": "Every attempt of a task",
                "responses": _responses(
                    200, {"type": "object", "properties": {"_items": {"type": "array"}}}, 404
                ),
            },
        },
        "/memory_usage": {
            "post": {
                "summary": "Store memory samples (workers)",
                "requestBody": {"required": True, "content": _json(memory_body)},
                "responses": _responses(201, ok, 400, 404, 413, 422, 503, 507),
            },
            "get": {
                "summary": "Query memory samples",
                "parameters": _QUERY_PARAMS,
                "responses": _responses(200, _collection({"type": "object"}), 400),
            },
        },
        "/tasks/{task_id}/logs": {
            "parameters": [_TASK_ID],
            "get": {
                "summary": "Captured stdout/stderr of an attempt (default: the current one)",
                "parameters": [
                    {"name": "stream", "in": "query", "schema": {"enum": ["stdout", "stderr"]}},
                    {"name": "tail", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {"name": "attempt", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                ],
                "responses": _responses(200, {"type": "object"}, 400, 404),
            },
        },
        "/tasks/{task_id}/update_execution_data": {
            "parameters": [_TASK_ID],
            "post": {
                "summary": "A worker's report on its attempt (needs the execution_key)",
                "requestBody": {
                    "required": True,
                    "content": _json({"$ref": REF.format(model="ExecutionUpdate")}),
                },
                "responses": _responses(200, task, 400, 404, 409, 413, 422, 503, 507),
            },
        },
        "/workers": {
            "post": {
                "summary": "Register a worker: returns its worker token",
                "requestBody": {
                    "required": True,
                    "content": _json(
                        {
                            "type": "object",
                            "required": ["name"],
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string", "minLength": 1, "maxLength": 128}
                            },
                        }
                    ),
                },
                "responses": _responses(201, {"type": "object"}, 400, 409, 413, 422),
            },
            "get": {
                "summary": "Workers: state, capacity, free, running attempts, heartbeat",
                "responses": _responses(200, {"type": "object"}),
            },
        },
        "/workers/connect": {
            "get": {
                "summary": "The worker gateway (websocket; see the README's worker protocol)",
                "responses": _responses(101, {"type": "object"}, 400),
            }
        },
        "/workers/{name}": {
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "get": {"summary": "One worker", "responses": _responses(200, {"type": "object"}, 404)},
        },
        "/events": {
            "get": {
                "summary": "The event feed (websocket; frames described in the README)",
                "parameters": [
                    {"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {"name": "where", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "types",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "comma-separated, e.g. task.state,worker.*",
                    },
                ],
                "responses": _responses(101, {"type": "object"}, 400),
            }
        },
        "/jobs": {
            "get": {
                "summary": "List jobs (one per POST /tasks): name, owner, counts, time span",
                "parameters": _QUERY_PARAMS,
                "responses": _responses(200, _collection({"$ref": REF.format(model="Job")}), 400),
            }
        },
        "/jobs/{job_id}": {
            "parameters": [_JOB_ID],
            "get": {
                "summary": "One job: name, owner, counts by state, time span",
                "responses": _responses(200, {"$ref": REF.format(model="Job")}, 404),
            },
        },
        "/stats": {
            "get": {
                "summary": "Counts by state and queue, throughput, wait/run time percentiles, "
                "worker load",
                "responses": _responses(200, {"type": "object"}),
            }
        },
        "/tasks/{task_id}/stats": {
            "parameters": [_TASK_ID],
            "get": {
                "summary": "Counts and estimated remaining runtime over the continuation tree",
                "responses": _responses(200, {"type": "object"}, 404),
            },
        },
        "/tasks/{task_id}/pending_reason": {
            "parameters": [_TASK_ID],
            "get": {
                "summary": "Why the task is not running yet: a code and a sentence",
                "responses": _responses(
                    200,
                    {
                        "type": "object",
                        "properties": {
                            "code": {
                                "enum": [
                                    "not_pending",
                                    "held",
                                    "waiting_on_parents",
                                    "no_worker_for_queue",
                                    "insufficient_resources",
                                    "busy",
                                    "queued",
                                    "not_before",
                                    "insufficient_time",
                                ]
                            },
                            "reason": {"type": "string"},
                        },
                    },
                    404,
                ),
            },
        },
        "/": {
            "get": {
                "summary": "Home: links to the resources (as Eve's home endpoint)",
                "responses": _responses(200, {"type": "object"}),
            }
        },
        "/health": {
            "get": {
                "summary": "Liveness (no token)",
                "security": [],
                "responses": {"200": {"description": "ok", "content": _json({"type": "object"})}},
            }
        },
        "/openapi.json": {
            "get": {"summary": "This document", "responses": _responses(200, {"type": "object"})}
        },
    }
    return paths
