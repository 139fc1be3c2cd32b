"""Jobs (``/jobs``, ``where={"job": J}``): every POST /tasks is one job,
against a live server; the trigger-kept counts checked against the tasks."""

from __future__ import annotations

import json
import sqlite3

from server.keys import STORE
from server.stores.sqlite import schema
from tests.conftest import Api
from tests.server.test_stats import claim, finish


async def test_bulk_post_is_one_job_named_after_its_first_task(api: Api) -> None:
    resp = await api.post("/tasks", [{"name": "a0", "command": "x"}, {"command": "y"}])
    assert resp.status == 201, resp
    first, second = (i["_id"] for i in resp.body["_items"])
    assert resp.body["job"] == first
    assert {i["job"] for i in resp.body["_items"]} == {first}
    assert (await api.task(second))["job"] == first
    job = await api.get(f"/jobs/{first}")
    assert job.status == 200, job
    assert job.body["name"] == "a0" and job.body["owner"] == "admin"
    assert job.body["total"] == 2 and job.body["counts"] == {"inactive": 2}
    assert job.body["time_started"] is None and job.body["time_ended"] is None
    found = await api.get("/tasks", params={"where": json.dumps({"job": first})})
    assert sorted(i["_id"] for i in found.body["_items"]) == sorted([first, second])


async def test_single_submit_is_a_job_of_one_and_a_name_may_be_given(api: Api) -> None:
    alone = await api.submit(command="x", name="solo")
    assert (await api.task(alone))["job"] == alone
    resp = await api.post("/tasks", [{"command": "x"}] * 3, params={"job_name": "sweep"})
    job_id = resp.body["job"]
    assert (await api.get(f"/jobs/{job_id}")).body["name"] == "sweep"
    listed = await api.get("/jobs", params={"where": json.dumps({"name": "sweep"})})
    assert [j["_id"] for j in listed.body["_items"]] == [job_id]
    assert listed.body["_meta"]["total"] == 1
    every = await api.get("/jobs", params={"sort": "-_id"})
    assert [j["_id"] for j in every.body["_items"]] == [job_id, alone]


async def test_job_counts_and_span_follow_the_tasks(api: Api) -> None:
    resp = await api.post("/tasks", [{"command": "x", "state": "available"}] * 3)
    job_id = resp.body["job"]
    attempts = await claim(api, limit=2)
    assert len(attempts) == 2
    job = (await api.get(f"/jobs/{job_id}")).body
    assert job["counts"] == {"running": 2, "available": 1}
    assert job["time_started"] is not None and job["time_ended"] is None
    for attempt in attempts:
        await finish(api, attempt)
    (third,) = await claim(api)
    await finish(api, third, "failure")
    job = (await api.get(f"/jobs/{job_id}")).body
    assert job["counts"] == {"terminated": 3}
    assert job["time_ended"] is not None
    # The trigger-kept counts are what a plain count over the tasks says.
    store = api.client.app[STORE]

    def both(conn: sqlite3.Connection) -> tuple[object, object]:
        kept = conn.execute("SELECT state, n FROM job_counts WHERE job = ? AND n > 0", (job_id,))
        plain = conn.execute(
            "SELECT state, count(*) FROM tasks WHERE job = ? GROUP BY state", (job_id,)
        )
        return sorted(kept.fetchall()), sorted(plain.fetchall())

    kept, plain = await store.db.read(both)  # type: ignore[attr-defined]
    assert kept == plain == [("terminated", 3)]


async def test_unknown_and_malformed_jobs(api: Api) -> None:
    assert (await api.get("/jobs/" + "0" * 24)).status == 404
    bad = await api.get("/jobs/zzz")
    assert bad.status == 404 and bad.body["_status"] == "ERR"
    bad_where = await api.get("/jobs", params={"where": json.dumps({"nope": 1})})
    assert bad_where.status == 400, bad_where


def test_migration_makes_old_tasks_jobs_of_one() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    before = next(i for i, m in enumerate(schema.MIGRATIONS) if "ADD COLUMN job TEXT" in m)
    for script in schema.MIGRATIONS[:before]:
        for statement in schema._statements(script):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {before}")
    conn.execute(
        "INSERT INTO tasks (id, name, state, queue, priority, max_retry_count, "
        "max_termination_time, requested_resources, cores, memory, gpus, owner, created, "
        "updated, etag) VALUES ('aa', 'old', 'terminated', 'default', 0, 0, 1, '{}', 1, 0, 0, "
        "'me', 1, 1, 'e')"
    )
    schema.migrate(conn)
    assert conn.execute("SELECT job FROM tasks").fetchall() == [("aa",)]
    assert conn.execute("SELECT id, name, owner, total FROM jobs").fetchall() == [
        ("aa", "old", "me", 1)
    ]
    assert conn.execute("SELECT job, state, n FROM job_counts").fetchall() == [
        ("aa", "terminated", 1)
    ]
