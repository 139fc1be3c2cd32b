"""``banyan.documents`` against the real server: the keys of ``TaskDoc``,
``ExecutionDoc``, ``WorkerDoc`` and ``RunningDoc`` are exactly what ``GET
/tasks/{id}`` and ``GET /workers`` return, and ``task_document`` (what the
TUI's fake source builds on) has the server's defaults for a new task."""

from __future__ import annotations

from typing import Any

from banyan.documents import (
    TASK_KEYS,
    WORKER_KEYS,
    ExecutionDoc,
    RunningDoc,
    task_document,
)
from tests.conftest import Api
from tests.server.test_stats import worker, ws_claim


async def test_task_and_worker_documents_have_exactly_the_typed_keys(api: Api) -> None:
    task_id = await api.submit(command="true", state="available", name="typed")
    async with worker(api, "w1") as ws:
        (attempt,) = await ws_claim(ws)
        assert attempt["task"] == task_id
        doc = await api.task(task_id)
        workers = (await api.get("/workers")).body["_items"]
    assert set(doc) == set(TASK_KEYS)
    assert set(doc["execution"]) == set(ExecutionDoc.__annotations__)
    (listed,) = workers
    assert set(listed) == set(WORKER_KEYS)
    (running,) = listed["running"]
    assert set(running) == set(RunningDoc.__annotations__)


async def test_task_document_has_the_servers_defaults(api: Api) -> None:
    task_id = await api.submit(command="true")
    served: dict[str, Any] = dict(await api.task(task_id))
    built: dict[str, Any] = dict(
        task_document(task_id, created=served["_created"], command="true", owner=served["owner"])
    )
    for server_only in ("_etag", "_links"):
        served.pop(server_only)
    assert built == served
