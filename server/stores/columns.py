"""How each collection's public fields map to SQL, shared by the SQL backends
(the expressions are the same on SQLite and PostgreSQL; a JSON key is spelled
by the compiler's ``Dialect``)."""

from __future__ import annotations

from server.stores.querysql import ColumnMap, json_object, link, scalar

TASK_QUERY_COLUMNS: ColumnMap = {
    "_id": scalar("t.id"),
    "name": scalar("t.name"),
    "command": scalar("t.command"),
    "state": scalar("t.state"),
    "queue": scalar("t.queue"),
    "priority": scalar("t.priority"),
    "max_retry_count": scalar("t.max_retry_count"),
    "retry_count": scalar("t.retry_count"),
    "pending_dependency_count": scalar("t.pending_dependency_count"),
    "run_when": scalar("t.run_when"),
    "max_termination_time": scalar("t.max_termination_time"),
    "estimated_runtime": scalar("t.estimated_runtime"),
    "time_limit": scalar("t.time_limit"),
    "not_before": scalar("t.not_before"),
    "max_abandon_count": scalar("t.max_abandon_count"),
    "abandon_count": scalar("t.abandon_count"),
    "owner": scalar("t.owner"),
    "job": scalar("t.job"),
    "cwd": scalar("t.cwd"),
    "env.*": json_object("t.env"),
    "requested_resources.cores": scalar("t.cores"),
    "requested_resources.memory": scalar("t.memory"),
    "requested_resources.gpus": scalar("t.gpus"),
    "requested_resources.*": json_object("t.requested_resources"),
    "continuations": link("continuations", owner="parent", element="child"),
    # As rendered (rows.row_to_doc): a group task that ended has an execution with
    # attempt 0; a task that never ran has none.
    "execution.attempt": scalar(
        "CASE WHEN t.attempt > 0 OR t.exit_status IS NOT NULL THEN t.attempt END"
    ),
    "execution.worker": scalar("t.worker"),
    "execution.exit_status": scalar("t.exit_status"),
    "execution.exit_code": scalar("t.exit_code"),
    "execution.time_started": scalar("t.time_started"),
    "execution.time_terminated": scalar("t.time_terminated"),
    "_created": scalar("t.created"),
    "_updated": scalar("t.updated"),
    "_etag": scalar("t.etag"),
}

MEMORY_COLUMNS: ColumnMap = {
    "_id": scalar("t.id"),
    "task": scalar("t.task_id"),
    "attempt": scalar("t.attempt"),
    "time": scalar("t.time"),
    "resident_memory_bytes": scalar("t.resident_memory_bytes"),
    "cpu_percent": scalar("t.cpu_percent"),
}
