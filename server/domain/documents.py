"""A task row as the API shows it: the one mapping from a task's stored
columns (in ``TASK_COLUMNS`` order, the same in every SQL backend) to its
document. Times stay epoch seconds (the views format them); ``execution``
comes from the current attempt's columns and never carries the execution key;
JSON columns arrive as text."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from banyan.states import ACTIVE_STATES


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def row_to_doc(row: Sequence[Any], continuations: list[str]) -> dict[str, Any]:
    (
        task_id,
        name,
        command,
        state,
        queue,
        priority,
        max_retry_count,
        retry_count,
        pending,
        max_termination_time,
        estimated_runtime,
        resources,
        env,
        cwd,
        owner,
        attempt,
        worker,
        exit_status,
        exit_code,
        time_started,
        time_terminated,
        progress,
        created,
        updated,
        etag,
        time_limit,
        not_before,
        max_abandon_count,
        abandon_count,
        job,
        run_when,
    ) = row
    doc: dict[str, Any] = {
        "_id": task_id,
        "name": name,
        "command": command,
        "state": state,
        "continuations": continuations,
        "requested_resources": json.loads(resources),
        "queue": queue,
        "priority": priority,
        "max_retry_count": max_retry_count,
        "retry_count": retry_count,
        "pending_dependency_count": pending,
        "run_when": run_when,
        "max_termination_time": max_termination_time,
        "estimated_runtime": estimated_runtime,
        "time_limit": time_limit,
        "not_before": not_before,
        "max_abandon_count": max_abandon_count,
        "abandon_count": abandon_count,
        "env": loads(env),
        "cwd": cwd,
        "owner": owner,
        "job": job,
        "execution": None,
        "_created": created,
        "_updated": updated,
        "_etag": etag,
    }
    if attempt or exit_status is not None:  # group tasks end without an attempt
        doc["execution"] = {
            "attempt": attempt,
            "worker": worker,
            "exit_status": exit_status,
            "exit_code": exit_code,
            "time_started": time_started,
            "time_terminated": time_terminated,
            "progress": loads(progress),
            # Prefetched: a worker holds it, its process has not started yet.
            "queued": time_started is None and state in ACTIVE_STATES,
        }
    return doc
