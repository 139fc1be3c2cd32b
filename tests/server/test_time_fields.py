"""Issue 13 over REST: ``time_limit`` (and the server's default),
``not_before``, ``max_abandon_count`` and the read-only ``abandon_count``."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from banyan.tokens import Role
from server.app import create_app
from server.keys import STORE
from server.settings import Settings
from tests.conftest import Api


async def test_the_fields_round_trip(api: Api) -> None:
    task_id = await api.submit(
        command="true",
        time_limit="1 hour 30 minutes",
        not_before="2026-12-08T02:00:00Z",
        max_abandon_count=5,
    )
    doc = await api.task(task_id)
    assert doc["time_limit"] == 5400
    assert doc["not_before"] == "Tue, 08 Dec 2026 02:00:00 GMT"
    assert doc["max_abandon_count"] == 5 and doc["abandon_count"] == 0
    assert (await api.task(await api.submit(command="true")))["time_limit"] is None


async def test_a_begin_time_may_be_a_duration_from_now(api: Api) -> None:
    before = time.time()
    doc = await api.task(await api.submit(command="true", not_before="now+10minutes"))
    begin = parsedate_to_datetime(doc["not_before"]).timestamp()
    assert before + 600 - 1 <= begin <= time.time() + 600


async def test_where_and_patch(api: Api) -> None:
    task_id = await api.submit(command="true", time_limit=60)
    found = await api.get("/tasks", params={"where": '{"time_limit": {"$gte": 60}}'})
    assert [t["_id"] for t in found.body["_items"]] == [task_id]
    changed = await api.patch(f"/tasks/{task_id}", {"time_limit": None, "not_before": "1h"})
    assert changed.status == 200, changed
    assert changed.body["time_limit"] is None and changed.body["not_before"] is not None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"time_limit": "forever"}, "time_limit"),
        ({"not_before": "next tuesday"}, "not_before"),
        ({"not_before": True}, "not_before"),
        ({"max_abandon_count": -1}, "max_abandon_count"),
        ({"abandon_count": 2}, "abandon_count"),
    ],
)
async def test_bad_values_are_422_naming_the_field(
    api: Api,
    body: dict[str, Any],
    field: str,
) -> None:
    resp = await api.post("/tasks", {"command": "true", **body})
    assert resp.status == 422, resp
    assert resp.body["_status"] == "ERR" and field in resp.body["_issues"]


async def test_pending_reason_names_the_begin_time(api: Api) -> None:
    task_id = await api.submit(command="true", state="available", not_before="2099-01-01T00:00Z")
    why = (await api.get(f"/tasks/{task_id}/pending_reason")).body
    assert why["code"] == "not_before"
    assert why["reason"] == "not before Thu, 01 Jan 2099 00:00:00 GMT"


@pytest.fixture
async def limited(aiohttp_client: Callable[..., Any], settings: Settings) -> Api:
    """A server with ``default_time_limit_s`` set."""
    app = create_app(settings.model_copy(update={"default_time_limit_s": 120.0}))
    client = await aiohttp_client(app)
    return Api(client, {"admin": await app[STORE].create_token("admin", Role.ADMIN)})


async def test_the_server_default_applies_unless_the_task_names_one(limited: Api) -> None:
    assert (await limited.task(await limited.submit(command="true")))["time_limit"] == 120
    own = await limited.submit(command="true", time_limit=5)
    assert (await limited.task(own))["time_limit"] == 5
    none = await limited.submit(command="true", time_limit=None)
    assert (await limited.task(none))["time_limit"] is None
    bulk = await limited.post("/tasks", [{"command": "a"}, {"command": "b", "time_limit": 1}])
    limits = [(await limited.task(i["_id"]))["time_limit"] for i in bulk.body["_items"]]
    assert limits == [120, 1]
    # Equal items share one validated object: each place still gets the default.
    same = await limited.post(
        "/tasks", [{"command": "a"}] * 3 + [{"command": "a", "time_limit": None}]
    )
    limits = [(await limited.task(i["_id"]))["time_limit"] for i in same.body["_items"]]
    assert limits == [120, 120, 120, None]
