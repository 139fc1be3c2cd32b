"""The public fields of each collection that ``where``, ``sort`` and
``projection`` may name (the whitelist the query language checks against)."""

from __future__ import annotations

from banyan.query import Field, FieldKind, Fields

_K = FieldKind

TASK_FIELDS: Fields = {
    "_id": Field(_K.ID, nullable=False),
    "name": Field(_K.STR),
    "command": Field(_K.STR),
    "state": Field(_K.STR, nullable=False),
    "queue": Field(_K.STR, nullable=False),
    "priority": Field(_K.INT, nullable=False),
    "max_retry_count": Field(_K.INT, nullable=False),
    "retry_count": Field(_K.INT, nullable=False),
    "pending_dependency_count": Field(_K.INT, nullable=False),
    "run_when": Field(_K.STR, nullable=False),
    "max_termination_time": Field(_K.NUMBER, nullable=False),
    "estimated_runtime": Field(_K.NUMBER),
    "time_limit": Field(_K.NUMBER),
    "not_before": Field(_K.DATE),
    "max_abandon_count": Field(_K.INT, nullable=False),
    "abandon_count": Field(_K.INT, nullable=False),
    "owner": Field(_K.STR, nullable=False),
    "job": Field(_K.ID),
    "cwd": Field(_K.STR),
    "env.*": Field(_K.STR, sortable=False),
    "requested_resources.cores": Field(_K.NUMBER),
    "requested_resources.memory": Field(_K.INT),
    "requested_resources.gpus": Field(_K.INT),
    "requested_resources.*": Field(_K.NUMBER),
    "continuations": Field(_K.LIST, sortable=False),
    "execution.attempt": Field(_K.INT),
    "execution.worker": Field(_K.STR),
    "execution.exit_status": Field(_K.STR),
    "execution.exit_code": Field(_K.INT),
    "execution.time_started": Field(_K.DATE),
    "execution.time_terminated": Field(_K.DATE),
    "_created": Field(_K.DATE, nullable=False),
    "_updated": Field(_K.DATE, nullable=False),
    "_etag": Field(_K.STR, nullable=False, sortable=False),
}

JOB_FIELDS: Fields = {
    "_id": Field(_K.ID, nullable=False),
    "name": Field(_K.STR),
    "owner": Field(_K.STR, nullable=False),
    "total": Field(_K.INT, nullable=False),
    "_created": Field(_K.DATE, nullable=False),
    "time_started": Field(_K.DATE),
}

MEMORY_USAGE_FIELDS: Fields = {
    "_id": Field(_K.INT, nullable=False),
    "task": Field(_K.ID, nullable=False),
    "attempt": Field(_K.INT, nullable=False),
    "time": Field(_K.DATE, nullable=False),
    "resident_memory_bytes": Field(_K.INT, nullable=False),
    "cpu_percent": Field(_K.NUMBER),
}
