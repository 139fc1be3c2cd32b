"""Shared fixtures: a real server on a loopback port with a real SQLite file,
tokens of every role, and an ``Api`` helper that speaks to it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from banyan.tokens import Role, basic_auth_header
from server.app import create_app
from server.keys import STORE
from server.settings import Settings
from server.stores.sqlite.store import SqliteStore
from testbed.postgres import FAST_SETTINGS, Postgres, PostgresMissing


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One throwaway PostgreSQL cluster for the whole session (``testbed.postgres``);
    tests take fresh databases from it. Missing binaries fail, never skip."""
    cluster = Postgres(settings=FAST_SETTINGS)
    try:
        cluster.start()
    except PostgresMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(
        db=tmp_path / "banyan.db", client_file=tmp_path / "client.json", token_cache_s=0
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    the_store = SqliteStore(tmp_path / "store.db")
    await the_store.open()
    yield the_store
    await the_store.close()


@dataclass
class Response:
    status: int
    body: Any
    headers: CIMultiDict[str]

    def __repr__(self) -> str:
        return f"<{self.status} {json.dumps(self.body)[:400]}>"


class Api:
    """Requests against the live test server, authenticated as ``token``."""

    def __init__(self, client: TestClient, tokens: dict[str, str]) -> None:
        self.client = client
        self.tokens = tokens

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        as_: str | None = "admin",
        raw: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Response:
        all_headers = dict(headers or {})
        if as_ is not None:
            all_headers["Authorization"] = basic_auth_header(self.tokens[as_])
        data: bytes | str | None = raw
        if body is not None:
            data = json.dumps(body)
            all_headers.setdefault("Content-Type", "application/json")
        async with self.client.request(
            method, path, data=data, headers=all_headers, params=params
        ) as resp:
            text = await resp.text()
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = text
            return Response(resp.status, parsed, CIMultiDict(resp.headers))

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Response:
        return await self.request("POST", path, body, **kw)

    async def patch(self, path: str, body: Any = None, **kw: Any) -> Response:
        return await self.request("PATCH", path, body, **kw)

    async def submit(self, as_: str = "admin", **task: Any) -> str:
        """POST one task, assert it was created, return its id."""
        resp = await self.post("/tasks", task, as_=as_)
        assert resp.status == 201, resp
        return str(resp.body["_id"])

    async def task(self, task_id: str) -> dict[str, Any]:
        resp = await self.get(f"/tasks/{task_id}")
        assert resp.status == 200, resp
        return dict(resp.body)


@pytest.fixture
async def api(aiohttp_client: Callable[..., Any], settings: Settings) -> AsyncIterator[Api]:
    app = create_app(settings)
    client: TestClient = await aiohttp_client(app)
    the_store = app[STORE]
    tokens = {
        "admin": await the_store.create_token("admin", Role.ADMIN),
        "alice": await the_store.create_token("alice", Role.PROVIDER),
        "bob": await the_store.create_token("bob", Role.PROVIDER),
        "worker": await the_store.create_token("worker-1", Role.WORKER),
    }
    yield Api(client, tokens)
