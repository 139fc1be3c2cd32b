"""The REST API against a live server: the original usage notes, as written,
and the Eve conventions around them (envelopes, ETags, bulk, paging)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from server.keys import STORE
from tests.conftest import Api


async def test_usage_notes_as_written(api: Api) -> None:
    created = await api.post(
        "/tasks", {"command": "test", "requested_resources": {"memory": "1 GiB"}}
    )
    assert created.status == 201
    assert created.body["_status"] == "OK"
    task_id = created.body["_id"]
    assert len(task_id) == 24 and set(task_id) <= set("0123456789abcdef")
    parsedate_to_datetime(created.body["_created"])  # RFC 1123, as Eve

    updated = await api.patch(
        f"/tasks/{task_id}", {"requested_resources": {"cores": 1, "memory": "1 GiB"}}
    )
    assert updated.status == 200
    assert updated.body["requested_resources"] == {"cores": 1, "memory": 2**30, "gpus": 0}

    parent = await api.post("/tasks", {"name": "parent", "continuations": [task_id]})
    assert parent.status == 201
    doc = await api.task(parent.body["_id"])
    assert doc["continuations"] == [task_id]
    assert (await api.task(task_id))["pending_dependency_count"] == 1


async def test_query_parameters(api: Api) -> None:
    for i in range(5):
        await api.submit(name=f"task {i}", command="true", priority=i)
    found = await api.get("/tasks", params={"where": json.dumps({"name": "task 1"})})
    assert [t["name"] for t in found.body["_items"]] == ["task 1"]
    found = await api.get("/tasks", params={"where": json.dumps({"retry_count": {"$lt": 10}})})
    assert found.body["_meta"]["total"] == 5
    found = await api.get(
        "/tasks", params={"projection": json.dumps({"name": 1}), "sort": '[("priority", -1)]'}
    )
    assert [t["name"] for t in found.body["_items"]] == [f"task {i}" for i in range(4, -1, -1)]
    assert set(found.body["_items"][0]) == {
        "_id",
        "name",
        "_created",
        "_updated",
        "_etag",
        "_links",
    }
    page = await api.get("/tasks", params={"max_results": "2", "page": "2", "sort": "priority"})
    assert [t["priority"] for t in page.body["_items"]] == [2, 3]
    assert page.body["_meta"] == {"page": 2, "max_results": 2, "total": 5}
    assert {"next", "prev", "last", "self", "parent"} <= set(page.body["_links"])
    excluded = await api.get("/tasks", params={"projection": json.dumps({"command": 0})})
    assert "command" not in excluded.body["_items"][0]
    assert "name" in excluded.body["_items"][0]


async def test_dotted_and_date_queries(api: Api) -> None:
    big = await api.submit(command="x", requested_resources={"memory": "8 GiB", "licences": 2})
    await api.submit(command="y", requested_resources={"memory": "1 GiB"})
    where = {"requested_resources.memory": {"$gt": 2**32}}
    found = await api.get("/tasks", params={"where": json.dumps(where)})
    assert [t["_id"] for t in found.body["_items"]] == [big]
    found = await api.get(
        "/tasks", params={"where": json.dumps({"requested_resources.licences": 2})}
    )
    assert [t["_id"] for t in found.body["_items"]] == [big]
    later = format_datetime(datetime(2100, 1, 1, tzinfo=UTC), usegmt=True)
    found = await api.get("/tasks", params={"where": json.dumps({"_created": {"$lt": later}})})
    assert found.body["_meta"]["total"] == 2


async def test_etag_and_if_match(api: Api) -> None:
    task_id = await api.submit(command="x")
    got = await api.get(f"/tasks/{task_id}")
    etag = got.headers["ETag"].strip('"')
    assert etag == got.body["_etag"]
    stale = await api.patch(f"/tasks/{task_id}", {"priority": 1}, headers={"If-Match": "abc"})
    assert stale.status == 412 and stale.body["_status"] == "ERR"
    fresh = await api.patch(f"/tasks/{task_id}", {"priority": 1}, headers={"If-Match": etag})
    assert fresh.status == 200 and fresh.body["_etag"] != etag
    not_modified = await api.get(
        f"/tasks/{task_id}", headers={"If-None-Match": fresh.body["_etag"]}
    )
    assert not_modified.status == 304


async def test_bulk_post_and_bulk_patch(api: Api) -> None:
    created = await api.post("/tasks", [{"command": f"echo {i}"} for i in range(3)])
    assert created.status == 201 and len(created.body["_items"]) == 3
    ids = [item["_id"] for item in created.body["_items"]]
    result = await api.patch(
        "/tasks",
        [
            {"_id": ids[0], "state": "available"},
            {"_id": ids[1], "state": "running"},
            {"_id": "0" * 24, "priority": 1},
        ],
    )
    assert result.status == 200 and result.body["_status"] == "ERR"
    first, second, third = result.body["_items"]
    assert first["_status"] == "OK" and first["state"] == "available"
    assert second["_status"] == "ERR" and second["_error"]["code"] == 409
    assert "inactive" in second["_error"]["message"]
    assert third["_error"]["code"] == 404


async def test_group_task_tree_in_one_post(api: Api) -> None:
    root, a, b = "a" * 24, "b" * 24, "c" * 24
    created = await api.post(
        "/tasks",
        [
            {"_id": root, "name": "group", "continuations": [a, b], "state": "available"},
            {"_id": a, "command": "step a", "state": "available"},
            {"_id": b, "command": "step b"},
        ],
    )
    assert created.status == 201
    assert (await api.task(root))["state"] == "terminated"
    assert (await api.task(a))["state"] == "available"
    assert (await api.task(b))["state"] == "available"


async def test_continuation_endpoints(api: Api) -> None:
    parent = await api.submit(command="p")
    child = await api.submit(command="c")
    added = await api.post("/tasks/add_continuations", [{"targets": [parent], "values": [child]}])
    assert added.status == 200
    assert (await api.task(parent))["continuations"] == [child]
    cycle = await api.patch(f"/tasks/{child}", {"add_continuations": [parent]})
    assert cycle.status == 422 and "cycle" in cycle.body["_error"]["message"]
    removed = await api.patch(f"/tasks/{parent}", {"remove_continuations": [child]})
    assert removed.status == 200 and removed.body["continuations"] == []
    assert (await api.task(child))["pending_dependency_count"] == 0


async def test_cancel_cascades_through_the_api(api: Api) -> None:
    child = await api.submit(command="c")
    parent = await api.submit(command="p", continuations=[child], state="available")
    cancelled = await api.patch(f"/tasks/{parent}", {"state": "cancelled"})
    assert cancelled.status == 200 and cancelled.body["state"] == "cancelled"
    assert (await api.task(child))["state"] == "cancelled"
    again = await api.patch(f"/tasks/{parent}", {"state": "cancelled"})
    assert again.status == 200  # a state to itself is a no-op success


async def test_history_and_memory_usage(api: Api) -> None:
    from banyan.resources import Resources

    task_id = await api.submit(command="sleep 1", state="available")
    store = api.client.app[STORE]
    (attempt,) = await store.claim(
        worker="w1", token="worker-1", free=Resources(cores=4), queues=["default"], limit=1
    )
    sample = {
        "task": task_id,
        "time": "Tue, 01 Dec 2026 10:00:00 GMT",
        "resident_memory_bytes": 123456,
    }
    stored = await api.post("/memory_usage", sample, as_="worker")
    assert stored.status == 201
    listed = await api.get("/memory_usage", params={"where": json.dumps({"task": task_id})})
    (record,) = listed.body["_items"]
    assert record["resident_memory_bytes"] == 123456
    assert record["time"] == "Tue, 01 Dec 2026 10:00:00 GMT"
    history = await api.get(f"/tasks/{task_id}/history")
    (entry,) = history.body["_items"]
    assert entry["worker"] == "w1" and entry["attempt"] == attempt["attempt"]
    assert entry["exit_status"] is None
    assert "execution_key" not in json.dumps(history.body)
    assert "execution_key" not in json.dumps((await api.get(f"/tasks/{task_id}")).body)


async def test_queues_and_priorities(api: Api) -> None:
    await api.submit(command="a", queue="gpu", priority=5)
    await api.submit(command="b", queue="cpu", priority=-1)
    found = await api.get("/tasks", params={"where": json.dumps({"queue": {"$in": ["gpu"]}})})
    assert [t["queue"] for t in found.body["_items"]] == ["gpu"]
    found = await api.get("/tasks", params={"sort": "-priority"})
    assert [t["priority"] for t in found.body["_items"]] == [5, -1]


async def test_health_needs_no_token(api: Api) -> None:
    health = await api.get("/health", as_=None)
    assert health.status == 200 and health.body["status"] == "ok"


async def test_worker_endpoints_refuse_wrongly_shaped_bodies(api: Api) -> None:
    task_id = await api.submit(command="x")
    for path, body, who in [
        (f"/tasks/{task_id}/update_execution_data", [1], "worker"),
        ("/workers", ["w"], "admin"),
    ]:
        resp = await api.post(path, body, as_=who)
        assert resp.status == 422, (path, resp)
        assert resp.body["_issues"] == {"body": "expected an object"}
