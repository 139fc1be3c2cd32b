"""The one fixture the shared store suite runs on: ``store`` is each backend
in ``server.stores.BACKENDS`` in turn (as huey's storage tests do), built by
the same factory as the server (``open_store``), on a fresh location."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.settings import Settings
from server.stores import BACKENDS, open_store
from server.stores.base import Store
from testbed.postgres import Postgres


async def fresh_location(request: pytest.FixtureRequest, scheme: str, tmp_path: Path) -> str:
    """A new, empty database for ``scheme`` (file backends get a file in
    ``tmp_path``; PostgreSQL a new database in the session's cluster)."""
    if scheme == "postgresql":
        cluster: Postgres = request.getfixturevalue("postgres")
        return await cluster.new_database()
    return f"{scheme}:///{tmp_path / 'store.db'}"


@pytest.fixture(params=sorted(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    settings = Settings.load(db=await fresh_location(request, request.param, tmp_path))
    the_store = open_store(settings)
    await the_store.open()
    yield the_store
    await the_store.close()
