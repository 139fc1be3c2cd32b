"""Idempotent submit (issue 11): ``POST /tasks`` with an ``Idempotency-Key``
creates its tasks once; a repeat (same key, same caller, same body) within
``idempotency_retention_s`` gets the original status and body back and creates
nothing; the same key with another body is 422. A repeated client-chosen
``_id`` says whether it is the caller's own task or another user's."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from banyan.tokens import Role
from server.app import create_app
from server.keys import STORE
from server.settings import Settings
from tests.conftest import Api

KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"


async def count(api: Api) -> int:
    resp = await api.get("/tasks", params={"max_results": "1"})
    return int(resp.body["_meta"]["total"])


def stored_keys(settings: Settings) -> list[tuple[str, str]]:
    with sqlite3.connect(settings.db) as conn:
        return conn.execute("SELECT caller, key FROM idempotency ORDER BY created").fetchall()


@pytest.mark.parametrize(
    "body",
    [
        {"command": "true", "name": "one"},
        [{"command": "true", "name": f"n{i}"} for i in range(3)],
    ],
    ids=["single", "bulk"],
)
async def test_a_repeat_with_the_key_gets_the_original_answer_and_creates_nothing(
    api: Api, settings: Settings, body: Any
) -> None:
    first = await api.post("/tasks", body, as_="alice", headers={KEY: "k-1"})
    assert first.status == 201, first
    assert REPLAYED not in first.headers
    made = await count(api)
    assert made == (1 if isinstance(body, dict) else 3)
    for _ in range(2):
        again = await api.post("/tasks", body, as_="alice", headers={KEY: "k-1"})
        assert (again.status, again.body) == (first.status, first.body)
        assert again.headers[REPLAYED] == "true"
    assert await count(api) == made
    assert stored_keys(settings) == [("alice", "k-1")]


async def test_the_same_key_with_another_body_is_422_and_creates_nothing(api: Api) -> None:
    first = await api.post("/tasks", {"command": "true"}, as_="alice", headers={KEY: "k-2"})
    assert first.status == 201
    other = await api.post("/tasks", {"command": "false"}, as_="alice", headers={KEY: "k-2"})
    assert other.status == 422, other
    assert "already used for a different request" in other.body["_error"]["message"]
    assert KEY in other.body["_issues"]
    assert await count(api) == 1
    # Key order and spacing are not a different body.
    same = await api.post(
        "/tasks", raw='{ "command" :  "true" }', as_="alice",
        headers={KEY: "k-2", "Content-Type": "application/json"},
    )  # fmt: skip
    assert same.status == 201 and same.body == first.body


async def test_keys_belong_to_their_caller(api: Api) -> None:
    mine = await api.post("/tasks", {"command": "true"}, as_="alice", headers={KEY: "shared"})
    theirs = await api.post("/tasks", {"command": "true"}, as_="bob", headers={KEY: "shared"})
    assert mine.status == theirs.status == 201
    assert mine.body["_id"] != theirs.body["_id"]
    assert REPLAYED not in theirs.headers
    assert await count(api) == 2


async def test_a_failed_request_stores_nothing_so_its_retry_is_tried_afresh(
    api: Api, settings: Settings
) -> None:
    unknown_parent = {"command": "true", "continuations": ["0" * 24]}
    bad = await api.post("/tasks", unknown_parent, as_="alice", headers={KEY: "k-3"})
    assert bad.status == 422, bad
    assert stored_keys(settings) == []
    invalid = await api.post("/tasks", {"command": 3}, as_="alice", headers={KEY: "k-3"})
    assert invalid.status == 422
    good = await api.post("/tasks", {"command": "true"}, as_="alice", headers={KEY: "k-3"})
    assert good.status == 201 and REPLAYED not in good.headers
    assert await count(api) == 1


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "é"])
async def test_a_malformed_key_is_400(api: Api, key: str) -> None:
    resp = await api.post("/tasks", {"command": "true"}, as_="alice", headers={KEY: key})
    assert resp.status == 400, resp
    assert KEY in resp.body["_error"]["message"]
    assert await count(api) == 0


@pytest.fixture
async def forgetful(
    aiohttp_client: Callable[..., Any], tmp_path: Path
) -> AsyncIterator[tuple[Api, Settings]]:
    """A server that keeps answers for a microsecond: every repeat is outside the window."""
    settings = Settings.load(
        db=tmp_path / "short.db",
        client_file=tmp_path / "client.json",
        token_cache_s=0,
        idempotency_retention_s=1e-6,
    )
    app = create_app(settings)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    token = await app[STORE].create_token("alice", Role.PROVIDER)
    yield Api(client, {"alice": token}), settings


async def test_after_the_retention_window_a_key_is_new_again_and_old_answers_are_pruned(
    forgetful: tuple[Api, Settings],
) -> None:
    api, settings = forgetful
    first = await api.post("/tasks", {"command": "true"}, as_="alice", headers={KEY: "old"})
    later = await api.post("/tasks", {"command": "true"}, as_="alice", headers={KEY: "old"})
    assert first.status == later.status == 201
    assert first.body["_id"] != later.body["_id"] and REPLAYED not in later.headers
    other = await api.post("/tasks", {"command": "true"}, as_="alice", headers={KEY: "new"})
    assert other.status == 201
    assert stored_keys(settings) == [("alice", "new")]


async def test_a_repeated_id_says_whether_it_is_your_own_task_or_another_users(api: Api) -> None:
    task_id = "6b1700000000000000000001"
    assert (
        await api.post("/tasks", {"_id": task_id, "command": "true"}, as_="alice")
    ).status == 201
    own = await api.post("/tasks", {"_id": task_id, "command": "true"}, as_="alice")
    assert own.status == 409, own
    assert "you already created a task with _id" in own.body["_error"]["message"]
    assert own.body["_issues"] == {"_id": "already exists: your own task"}
    other = await api.post("/tasks", [{"_id": task_id, "command": "true"}], as_="bob")
    assert other.status == 409, other
    message = other.body["_error"]["message"]
    assert "taken by another user's task" in message and "alice" not in message
    assert other.body["_issues"] == {"0._id": "taken by another user's task"}
    assert await count(api) == 1
