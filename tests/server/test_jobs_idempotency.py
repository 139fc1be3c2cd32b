"""Where jobs and why-pending meet idempotent submit and the claim-order
pending reasons: a keyed ``POST /tasks`` stores its whole answer (``job``,
``_warnings``), so a replay is the same answer; ``job_name`` and
``require_fit`` are part of the request a key names; a ``require_fit``
refusal stores nothing; and ``GET /tasks?reasons=1`` gives each task the
reason ``/tasks/{id}/pending_reason`` gives (tasks ahead in line included)."""

from __future__ import annotations

import json

from tests.conftest import Api
from tests.server.test_stats import worker

KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
BULK = [{"command": "a", "queue": "nobody"}, {"command": "b", "queue": "nobody"}]


async def count(api: Api) -> int:
    resp = await api.get("/tasks", params={"max_results": "1"})
    return int(resp.body["_meta"]["total"])


async def test_a_replay_carries_the_job_and_the_warnings_of_the_first_answer(api: Api) -> None:
    params = {"job_name": "sweep"}
    first = await api.post("/tasks", BULK, headers={KEY: "j-1"}, params=params)
    assert first.status == 201, first
    assert first.body["job"] == first.body["_items"][0]["_id"]
    assert all(item["job"] == first.body["job"] for item in first.body["_items"])
    assert first.body["_warnings"] == [
        "2 task(s): no connected worker could ever fit it: no connected worker serves "
        "queue 'nobody'; it will wait for one"
    ]
    async with worker(api, "w-n", queues=["nobody"]):
        # The warning would not be given now; the replay is still the first answer.
        again = await api.post("/tasks", BULK, headers={KEY: "j-1"}, params=params)
    assert (again.status, again.body) == (first.status, first.body)
    assert again.headers[REPLAYED] == "true"
    assert await count(api) == 2
    job = await api.get(f"/jobs/{first.body['job']}")
    assert (job.body["name"], job.body["total"]) == ("sweep", 2)


async def test_the_same_key_with_another_job_name_or_require_fit_is_422(api: Api) -> None:
    one = {"command": "x"}
    first = await api.post("/tasks", one, headers={KEY: "j-2"}, params={"job_name": "a"})
    assert first.status == 201, first
    for params in ({"job_name": "b"}, {}, {"job_name": "a", "require_fit": "1"}):
        other = await api.post("/tasks", one, headers={KEY: "j-2"}, params=params)
        assert other.status == 422, (params, other)
        assert KEY in other.body["_issues"]
    assert await count(api) == 1
    # Without job_name or require_fit the key names the body alone, as before jobs.
    plain = await api.post("/tasks", one, headers={KEY: "j-3"})
    assert (await api.post("/tasks", one, headers={KEY: "j-3"})).body == plain.body


async def test_a_keyed_require_fit_refusal_stores_nothing_and_a_taken_one_replays(
    api: Api,
) -> None:
    big = {"command": "x", "requested_resources": {"cores": 8}}
    fit = {"require_fit": "1"}
    refused = await api.post("/tasks", big, headers={KEY: "j-4"}, params=fit)
    assert refused.status == 422, refused
    assert KEY not in refused.body["_issues"]
    assert "requested_resources" in refused.body["_issues"]
    assert await count(api) == 0
    async with worker(api, "w-big", capacity={"cores": 8}):
        # The refusal kept nothing: the retry under the same key runs afresh.
        taken = await api.post("/tasks", big, headers={KEY: "j-4"}, params=fit)
        assert taken.status == 201, taken
        assert REPLAYED not in taken.headers
    # The worker has gone: a retry of the request that was taken replays it.
    again = await api.post("/tasks", big, headers={KEY: "j-4"}, params=fit)
    assert (again.status, again.body) == (taken.status, taken.body)
    assert again.headers[REPLAYED] == "true"
    assert await count(api) == 1


async def test_reasons_in_a_page_agree_with_the_single_reason_behind_tasks_ahead(
    api: Api,
) -> None:
    ids = [await api.submit(command=c, name=f"line-{c}", state="available") for c in "abc"]
    where = json.dumps({"name": {"$in": [f"line-{c}" for c in "abc"]}})
    async with worker(api, "w-2", capacity={"cores": 2}):
        page = await api.get("/tasks", params={"where": where, "reasons": "1"})
        listed = {i["_id"]: i["_pending_reason"] for i in page.body["_items"]}
        for task_id in ids:
            single = await api.get(f"/tasks/{task_id}/pending_reason")
            assert listed[task_id] == {"code": single.body["code"], "reason": single.body["reason"]}
        assert [listed[t]["code"] for t in ids] == ["queued", "queued", "busy"]
