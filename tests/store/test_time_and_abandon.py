"""Issue 13 in the Store, for every backend: the crash budget
(``max_abandon_count``, ``abandon_count``), begin times (``not_before``) and
wall-time limits as a claim filter against the worker's remaining lifetime."""

from __future__ import annotations

import time

from banyan.states import ABANDONED, FAILURE
from server.stores.base import Store
from tests.store.test_store import BIG, finish, new, patch, run


async def test_new_fields_have_their_defaults(store: Store) -> None:
    doc = await store.get_task(await new(store, command="true"))
    assert doc["time_limit"] is None and doc["not_before"] is None
    assert doc["max_abandon_count"] == 3 and doc["abandon_count"] == 0


async def test_abandonments_use_the_crash_budget_then_end_abandoned(store: Store) -> None:
    task_id = await new(store, command="x", state="available", max_abandon_count=2)
    for count in (1, 2):
        await run(store)
        await store.abandon_worker("w1")
        doc = await store.get_task(task_id)
        assert doc["state"] == "available" and doc["abandon_count"] == count
        assert doc["retry_count"] == 0  # max_retry_count (0) is not touched
    await run(store)
    await store.abandon_worker("w1")
    doc = await store.get_task(task_id)
    assert doc["state"] == "terminated" and doc["execution"]["exit_status"] == ABANDONED
    history = await store.history(task_id)
    assert [h["exit_status"] for h in history] == [ABANDONED] * 3


async def test_a_failure_after_abandonments_follows_the_retry_rule(store: Store) -> None:
    await new(store, command="x", state="available", max_retry_count=0)
    await run(store)
    await store.abandon_worker("w1")
    (attempt,) = await run(store)
    doc = await finish(store, attempt, FAILURE)
    assert doc["state"] == "terminated" and doc["abandon_count"] == 1


async def test_a_user_retry_resets_the_crash_budget(store: Store) -> None:
    task_id = await new(store, command="x", state="available", max_abandon_count=0)
    await run(store)
    await store.abandon_worker("w1")
    assert (await store.get_task(task_id))["state"] == "terminated"
    doc = await patch(store, task_id, state="available")
    assert doc["state"] == "available" and doc["abandon_count"] == 0


async def test_a_task_is_not_claimed_before_its_begin_time(store: Store) -> None:
    later = await new(store, command="x", state="available", not_before=time.time() + 3600)
    now = await new(store, command="x", state="available", not_before=time.time() - 1)
    assert [a["task"] for a in await run(store)] == [now]
    assert await store.next_begin() == (await store.get_task(later))["not_before"]
    await patch(store, later, not_before=None)
    assert [a["task"] for a in await run(store)] == [later]
    assert await store.next_begin() is None


async def test_time_limits_are_matched_to_the_worker_s_remaining_lifetime(store: Store) -> None:
    long = await new(store, command="x", state="available", time_limit=10, priority=2)
    short = await new(store, command="x", state="available", time_limit=3, priority=1)
    unlimited = await new(store, command="x", state="available")

    async def claim(remaining_s: float | None) -> list[str]:
        got = await store.claim(
            worker="w1",
            token="w1",
            free=BIG,
            queues=["default"],
            limit=10,
            remaining_s=remaining_s,
        )
        return [a["task"] for a in got]

    # As in HyperQueue: a task asking no time may go to any worker.
    assert await claim(5) == [short, unlimited]
    assert await claim(None) == [long]
    doc = await store.get_task(long)
    assert doc["time_limit"] == 10
