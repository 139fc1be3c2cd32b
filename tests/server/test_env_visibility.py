"""Secrets stay with their owner (issue 11): a task's ``env`` values are seen
by its owner and admins only, over every read path (one task, the collection,
projections, updates); a ``where`` on env values cannot probe another user's
tasks; attempt history and the stored events never carry env; a worker gets
env only in the ``assigned`` frame of the attempt it holds."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
from aiohttp import WSMsgType

from banyan.tokens import Role, basic_auth_header
from server.domain.secrets import REDACTED
from server.keys import STORE
from server.settings import Settings
from tests.conftest import Api

SECRET = "hunter2-s3cret"
ENV = {"API_TOKEN": SECRET, "MODE": "fast"}
HIDDEN = {"API_TOKEN": REDACTED, "MODE": REDACTED}
FRAME_TIMEOUT_S = 10.0


async def alices_task(api: Api, **extra: Any) -> str:
    return await api.submit(as_="alice", command="true", name="job", env=ENV, **extra)


@pytest.mark.parametrize(("who", "sees"), [("alice", ENV), ("admin", ENV), ("bob", HIDDEN),
                                           ("worker", HIDDEN)])  # fmt: skip
async def test_env_values_are_seen_by_the_owner_and_admins_only(
    api: Api, who: str, sees: dict[str, str]
) -> None:
    tid = await alices_task(api)
    one = await api.get(f"/tasks/{tid}", as_=who)
    assert one.status == 200, one
    assert one.body["env"] == sees
    many = await api.get("/tasks", as_=who)
    assert [t["env"] for t in many.body["_items"]] == [sees]
    projected = await api.get(f"/tasks/{tid}", as_=who, params={"projection": '{"env": 1}'})
    assert projected.body["env"] == sees
    excluded = await api.get("/tasks", as_=who, params={"projection": '{"command": 0}'})
    assert excluded.body["_items"][0]["env"] == sees
    if sees == HIDDEN:
        assert SECRET not in json.dumps([one.body, many.body, projected.body, excluded.body])


@pytest.mark.parametrize("who", ["bob", "worker"])
async def test_a_where_on_env_values_cannot_probe_another_users_tasks(api: Api, who: str) -> None:
    tid = await alices_task(api)
    probes = [
        {"env.API_TOKEN": SECRET},
        {"env.API_TOKEN": {"$gte": "h"}},
        {"env.API_TOKEN": {"$lt": "i"}},
        {"env.API_TOKEN": {"$in": [SECRET, "x"]}},
        {"env.API_TOKEN": {"$ne": "nope"}},
        {"env.API_TOKEN": {"$nin": ["nope"]}},
        {"$or": [{"env.API_TOKEN": SECRET}, {"name": "no such name"}]},
        {"$and": [{"name": "job"}, {"env.MODE": "fast"}]},
    ]
    for probe in probes:
        params = {"where": json.dumps(probe)}
        theirs = await api.get("/tasks", as_=who, params=params)
        assert theirs.status == 200, (probe, theirs)
        assert theirs.body["_meta"]["total"] == 0, probe
        owners = await api.get("/tasks", as_="alice", params=params)
        assert [t["_id"] for t in owners.body["_items"]] == [tid], probe
        admins = await api.get("/tasks", as_="admin", params=params)
        assert admins.body["_meta"]["total"] == 1, probe
    # The rest of a where keeps its meaning, and keys are not secret.
    for visible in ({"$or": [{"env.API_TOKEN": SECRET}, {"name": "job"}]},
                    {"env.API_TOKEN": {"$exists": True}}):  # fmt: skip
        found = await api.get("/tasks", as_=who, params={"where": json.dumps(visible)})
        assert [t["_id"] for t in found.body["_items"]] == [tid], visible
        assert found.body["_items"][0]["env"] == HIDDEN


async def test_a_providers_env_where_finds_its_own_tasks_among_others(api: Api) -> None:
    await alices_task(api)
    bobs = await api.submit(as_="bob", command="true", env={"API_TOKEN": SECRET})
    found = await api.get("/tasks", as_="bob", params={"where": f'{{"env.API_TOKEN": "{SECRET}"}}'})
    assert [t["_id"] for t in found.body["_items"]] == [bobs]
    assert found.body["_items"][0]["env"] == {"API_TOKEN": SECRET}


async def test_sorting_on_env_is_refused_for_everyone(api: Api) -> None:
    await alices_task(api)
    for who in ("alice", "admin", "bob"):
        resp = await api.get("/tasks", as_=who, params={"sort": "env.API_TOKEN"})
        assert resp.status == 400, resp


async def test_updates_answer_the_owner_with_the_values(api: Api) -> None:
    tid = await alices_task(api)
    one = await api.patch(f"/tasks/{tid}", {"priority": 3}, as_="alice")
    assert one.status == 200 and one.body["env"] == ENV, one
    bulk = await api.patch("/tasks", [{"_id": tid, "priority": 4}], as_="alice")
    assert bulk.body["_items"][0]["env"] == ENV, bulk
    refused = await api.patch(f"/tasks/{tid}", {"priority": 5}, as_="bob")
    assert refused.status == 403 and SECRET not in json.dumps(refused.body)


async def test_only_the_worker_holding_the_attempt_gets_env_and_history_and_events_hold_none(
    api: Api, settings: Settings
) -> None:
    other = await api.client.app[STORE].create_token("worker-2", Role.WORKER)
    tid = await alices_task(api, state="available")
    headers = {"Authorization": basic_auth_header(api.tokens["worker"])}
    async with api.client.ws_connect("/workers/connect", headers=headers) as ws:
        hello = {"type": "hello", "name": "worker-1", "capacity": {"cores": 4}}
        await ws.send_str(json.dumps(hello))
        await _frame(ws, "welcome")
        await ws.send_str(json.dumps({"type": "claim", "free": {"cores": 4}, "limit": 4}))
        (attempt,) = (await _frame(ws, "assigned"))["attempts"]
        assert attempt["task"] == tid and attempt["env"] == ENV
        # Over REST, neither this worker token nor another sees the values.
        for token in (api.tokens["worker"], other):
            auth = {"Authorization": basic_auth_header(token)}
            async with api.client.get(f"/tasks/{tid}", headers=auth) as resp:
                assert (await resp.json())["env"] == HIDDEN
        finished = {"type": "finished", "task": tid, "execution_key": attempt["execution_key"],
                    "exit_status": "success", "exit_code": 0}  # fmt: skip
        await ws.send_str(json.dumps(finished))
        await _frame(ws, "accepted")
    history = await api.get(f"/tasks/{tid}/history", as_="alice")
    assert history.status == 200 and len(history.body["_items"]) == 1
    assert "env" not in history.body["_items"][0]
    assert SECRET not in json.dumps(history.body)
    with sqlite3.connect(settings.db) as conn:
        stored = conn.execute("SELECT type, data FROM events").fetchall()
    assert {t for t, _ in stored} >= {"task.created", "task.state"}
    assert not [d for _, d in stored if SECRET in d or "API_TOKEN" in d]


async def _frame(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        msg = await ws.receive(timeout=FRAME_TIMEOUT_S)
        assert msg.type == WSMsgType.TEXT, (msg, ws.close_code)
        frame = json.loads(msg.data)
        if frame["type"] == kind:
            return dict(frame)
