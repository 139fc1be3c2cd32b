"""Why pending, in bulk: ``GET /tasks?reasons=1`` (a ``_pending_reason`` per
item, one round trip per page), the ``_warnings`` of a ``POST /tasks`` that
no connected worker could ever fit, and ``?require_fit=1`` refusing it; against
a live server with live gateway connections."""

from __future__ import annotations

import json

from tests.conftest import Api
from tests.server.test_stats import worker, ws_claim

NEVER = "no connected worker could ever fit it"


async def test_a_page_of_tasks_carries_each_ones_reason(api: Api) -> None:
    held = await api.submit(command="h", name="r-held")
    big = await api.submit(
        command="b", name="r-big", state="available", requested_resources={"cores": 8}
    )
    small = await api.submit(command="s", name="r-small", state="available", priority=5)
    where = json.dumps({"name": {"$in": ["r-held", "r-big", "r-small"]}})
    async with worker(api, "w-a", capacity={"cores": 4}) as ws:
        resp = await api.get(
            "/tasks", params={"where": where, "reasons": "1", "projection": '{"name": 1}'}
        )
        assert resp.status == 200, resp
        reasons = {i["_id"]: i["_pending_reason"] for i in resp.body["_items"]}
        assert reasons[held] == {"code": "held", "reason": "held: make it available to run"}
        assert reasons[big]["code"] == "insufficient_resources"
        assert reasons[big]["reason"] == "needs 8 cores; the largest worker serving 'default' has 4"
        assert reasons[small]["code"] == "queued"
        (attempt,) = await ws_claim(ws)
        assert attempt["task"] == small
        again = await api.get("/tasks", params={"where": where, "reasons": "1"})
        by_id = {i["_id"]: i["_pending_reason"] for i in again.body["_items"]}
        assert by_id[small] == {"code": "not_pending", "reason": "running on worker 'w-a'"}
    plain = await api.get("/tasks", params={"where": where})
    assert all("_pending_reason" not in i for i in plain.body["_items"])
    bad = await api.get("/tasks", params={"reasons": "maybe"})
    assert bad.status == 400 and bad.body["_status"] == "ERR"


async def test_submit_warns_when_no_connected_worker_could_ever_fit(api: Api) -> None:
    alone = await api.post("/tasks", {"command": "x"})
    assert alone.status == 201
    assert alone.body["_warnings"] == [
        f"{NEVER}: no connected worker serves queue 'default'; it will wait for one"
    ]
    async with worker(api, "w-a", capacity={"cores": 2, "memory": "4 GiB"}):
        fits = await api.post("/tasks", {"command": "x", "requested_resources": {"cores": 2}})
        assert fits.status == 201 and "_warnings" not in fits.body
        big = await api.post("/tasks", {"command": "x", "requested_resources": {"cores": 8}})
        assert big.status == 201, big
        assert big.body["_warnings"] == [
            f"{NEVER}: needs 8 cores; the largest worker serving 'default' has 2; "
            "it will wait for one"
        ]
        bulk = await api.post(
            "/tasks",
            [
                {"command": "a", "requested_resources": {"memory": "8 GiB"}},
                {"command": "b", "requested_resources": {"memory": "8 GiB"}},
                {"command": "c"},
                {"name": "group, no worker needed"},
            ],
        )
        assert bulk.status == 201, bulk
        assert bulk.body["_warnings"] == [
            f"2 task(s): {NEVER}: needs 8 GiB of memory; the largest worker serving 'default' "
            "has 4 GiB; it will wait for one"
        ]
        refused = await api.post(
            "/tasks",
            {"command": "x", "name": "refused", "requested_resources": {"cores": 8}},
            params={"require_fit": "1"},
        )
        assert refused.status == 422, refused
        assert "needs 8 cores" in refused.body["_error"]["message"]
        assert "needs 8 cores" in refused.body["_issues"]["requested_resources"]
        none = await api.get("/tasks", params={"where": json.dumps({"name": "refused"})})
        assert none.body["_items"] == []
        ok = await api.post("/tasks", {"command": "x"}, params={"require_fit": "true"})
        assert ok.status == 201 and "_warnings" not in ok.body
        other = await api.post(
            "/tasks", [{"command": "x", "queue": "gpu"}], params={"require_fit": "1"}
        )
        assert other.status == 422
        assert other.body["_issues"] == {
            "0.requested_resources": "no connected worker serves queue 'gpu'"
        }
