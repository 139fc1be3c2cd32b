"""The query language on the PostgreSQL store agrees with ``banyan.query.matches``:
``test_querysql``'s random where/sort queries over its task set, through
``PostgresStore.find_tasks`` (the shared column map compiled with the
PostgreSQL dialect), as that file checks them on SQLite."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from banyan.fields import TASK_FIELDS
from banyan.projection import parse_sort
from banyan.query import matches, parse_where
from banyan.resources import Resources
from banyan.states import FAILURE, SUCCESS
from banyan.tokens import Caller, Role
from server.stores.base import Query
from server.stores.postgres.store import PostgresStore
from testbed.postgres import Postgres
from tests.store.test_querysql import (
    _as_queried,
    _store_tasks,
    parsed_or_refused,
    sort_texts,
    store_where,
)

Loaded = tuple[asyncio.AbstractEventLoop, PostgresStore, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def pg_store(postgres: Postgres) -> Iterator[Loaded]:
    loop = asyncio.new_event_loop()
    store = PostgresStore(loop.run_until_complete(postgres.new_database("q")))

    async def populate() -> list[dict[str, Any]]:
        await store.open()
        await store.create_tasks(_store_tasks(), Caller("alice", Role.PROVIDER))
        big = Resources(cores=64, memory=2**40, gpus=8)
        claimed = await store.claim(
            worker="w1", token="w1", free=big, queues=["default", "gpu"], limit=6
        )
        for attempt, status in zip(claimed, [SUCCESS, FAILURE, SUCCESS, FAILURE], strict=False):
            await store.finish(
                attempt["task"],
                attempt["execution_key"],
                exit_status=status,
                exit_code=0 if status == SUCCESS else 1,
                usage=None,
                caller=Caller("w1", Role.WORKER),
            )
        page = await store.find_tasks(Query(max_results=1000))
        return [_as_queried(await store.get_task(doc["_id"])) for doc in page.items]

    docs = loop.run_until_complete(populate())
    yield loop, store, docs
    loop.run_until_complete(store.close())
    loop.close()


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_postgres_queries_agree_with_matches(pg_store: Loaded, data: st.DataObject) -> None:
    loop, store, docs = pg_store
    document = data.draw(store_where(docs))
    node = parsed_or_refused(parse_where, json.dumps(document), TASK_FIELDS)
    if node is None and document:
        return
    sort = parsed_or_refused(parse_sort, data.draw(sort_texts()), TASK_FIELDS) or ()
    page = loop.run_until_complete(store.find_tasks(Query(where=node, sort=sort, max_results=1000)))
    wanted = {doc["_id"] for doc in docs if matches(node, doc)}
    assert {doc["_id"] for doc in page.items} == wanted, (document, sort)
    assert page.total == len(wanted)


def test_postgres_pages_follow_the_sort_as_sqlite_does(pg_store: Loaded) -> None:
    loop, store, docs = pg_store
    sort = (("name", 1), ("priority", -1))
    seen: list[str] = []
    for page in range(1, 10):  # bounded: 24 tasks, 5 a page
        items = loop.run_until_complete(
            store.find_tasks(Query(sort=sort, page=page, max_results=5))
        ).items
        seen += [d["_id"] for d in items]
        if not items:
            break

    def key(doc: dict[str, Any]) -> tuple[Any, ...]:
        # NULLs first ascending, as SQLite orders them; names compare by code point.
        return (doc["name"] is not None, doc["name"] or "", -doc["priority"], doc["_id"])

    assert seen == [d["_id"] for d in sorted(docs, key=key)]
