"""Prefetch in the store (issue 12): a claim hands out queued attempts beyond
what fits now; a queued attempt has no ``time_started`` until the worker says
it started; handed back, or its worker gone, it is available again without
counting a retry; asked to stop, it is cancelled at once."""

from __future__ import annotations

import time
from typing import Any

import pytest

from banyan.errors import Conflict, Unauthorized
from banyan.models import TaskCreate, TaskPatch
from banyan.resources import Resources
from banyan.states import ABANDONED, SUCCESS
from banyan.tokens import Caller, Role
from server.domain.transitions import RETURNED
from server.stores.base import Store

ADMIN = Caller("admin", Role.ADMIN)
WORKER = Caller("w1", Role.WORKER)
ONE_CORE = Resources(cores=1, memory=2**30)


async def available(store: Store, n: int, **fields: Any) -> list[str]:
    tasks = [TaskCreate.model_validate({"command": "true", "state": "available", **fields})] * n
    return [str(m["_id"]) for m in await store.create_tasks(tasks, ADMIN)]


async def claim(store: Store, *, free: Resources, prefetch: int) -> list[dict[str, Any]]:
    found = await store.claim(
        worker="w1",
        token="w1",
        free=free,
        queues=["default"],
        limit=32,
        prefetch=prefetch,
        capacity=ONE_CORE,
    )
    return [dict(a) for a in found]


async def join(store: Store) -> None:
    await store.join_worker(
        name="w1", token="w1", capacity={"cores": 1}, queues=["default"], host="h", pid=1, held=[]
    )


async def test_queued_attempts_follow_what_fits_and_start_unset(store: Store) -> None:
    a, b, c, d = await available(store, 4)
    found = await claim(store, free=ONE_CORE, prefetch=2)
    assert [x["task"] for x in found] == [a, b, c]
    assert [bool(x.get("queued")) for x in found] == [False, True, True]
    now, queued = await store.get_task(a), await store.get_task(b)
    assert now["execution"]["time_started"] is not None and now["execution"]["queued"] is False
    assert queued["state"] == "running"
    assert queued["execution"]["time_started"] is None and queued["execution"]["queued"] is True
    await store.start_queued(b, found[1]["execution_key"], time=1234.5, caller=WORKER, worker="w1")
    started = await store.get_task(b)
    assert started["execution"]["time_started"] == 1234.5
    assert started["execution"]["queued"] is False
    assert (await store.get_task(d))["state"] == "available"


async def test_full_worker_claims_only_queued(store: Store) -> None:
    a, b = await available(store, 2)
    found = await claim(store, free=Resources(cores=0, memory=0), prefetch=1)
    assert [(x["task"], x.get("queued")) for x in found] == [(a, True)]
    assert (await store.get_task(b))["state"] == "available"


async def test_full_worker_still_gets_coreless_tasks_now(store: Store) -> None:
    # A full worker's claim reads the core-less tasks from their own index
    # (SQLite): it must still pick them in the claim order, and queue the rest.
    (a,) = await available(store, 1)
    b, c = await available(store, 2, requested_resources={"cores": 0})
    (d,) = await available(store, 1, requested_resources={"cores": 0}, priority=5)
    (e,) = await available(store, 1, requested_resources={"cores": 0.5})
    found = await claim(store, free=Resources(cores=0, memory=0), prefetch=1)
    assert [(x["task"], bool(x.get("queued"))) for x in found] == [(d, False), (a, True)]
    found = await claim(store, free=Resources(cores=0, memory=0), prefetch=0)
    assert [(x["task"], bool(x.get("queued"))) for x in found] == [(b, False)]
    assert (await store.get_task(c))["state"] == "available"
    assert (await store.get_task(e))["state"] == "available"


async def test_returned_is_available_again_uncounted(store: Store) -> None:
    (a,) = await available(store, 1, max_retry_count=0)
    (attempt,) = await claim(store, free=Resources(cores=0, memory=0), prefetch=1)
    await store.return_queued(a, attempt["execution_key"], caller=WORKER, worker="w1")
    doc = await store.get_task(a)
    assert doc["state"] == "available" and doc["retry_count"] == 0
    assert doc["execution"]["exit_status"] == RETURNED
    with pytest.raises(Conflict):  # handed back twice
        await store.return_queued(a, attempt["execution_key"], caller=WORKER, worker="w1")
    (again,) = await claim(store, free=ONE_CORE, prefetch=0)
    assert again["attempt"] == 2


async def test_started_attempt_cannot_be_returned(store: Store) -> None:
    (a,) = await available(store, 1)
    (attempt,) = await claim(store, free=Resources(cores=0, memory=0), prefetch=1)
    key = attempt["execution_key"]
    await store.start_queued(a, key, time=1.0, caller=WORKER, worker="w1")
    with pytest.raises(Conflict, match="started"):
        await store.return_queued(a, key, caller=WORKER, worker="w1")


async def test_lost_worker_abandons_running_and_requeues_queued(store: Store) -> None:
    await join(store)
    a, b = await available(store, 2, max_retry_count=0)
    await claim(store, free=ONE_CORE, prefetch=1)
    abandoned = await store.leave_worker("w1", lost=True)
    assert abandoned == [a]
    assert (await store.get_task(a))["execution"]["exit_status"] == ABANDONED
    doc = await store.get_task(b)
    assert doc["state"] == "available" and doc["retry_count"] == 0


async def test_cancelled_while_queued_ends_cancelled(store: Store) -> None:
    await join(store)
    child = str((await store.create_tasks([TaskCreate(command="c")], ADMIN))[0]["_id"])
    (a,) = await available(store, 1, continuations=[child])
    (attempt,) = await claim(store, free=Resources(cores=0, memory=0), prefetch=1)
    await store.update_task(a, TaskPatch(state="pending_cancellation"), ADMIN)
    # The worker drops it from its queue and reports it cancelled, with no process.
    await store.finish(
        a, attempt["execution_key"], exit_status="cancelled", exit_code=None, usage=None,
        caller=WORKER,
    )  # fmt: skip
    doc = await store.get_task(a)
    assert doc["state"] == "cancelled" and doc["execution"]["time_started"] is None
    assert (await store.get_task(child))["state"] == "cancelled"


async def test_worker_gone_while_queued_task_asked_to_stop_cancels_it(store: Store) -> None:
    await join(store)
    (a,) = await available(store, 1)
    await claim(store, free=Resources(cores=0, memory=0), prefetch=1)
    await store.update_task(a, TaskPatch(state="pending_cancellation"), ADMIN)
    await store.leave_worker("w1", lost=False)
    doc = await store.get_task(a)
    assert doc["state"] == "cancelled" and doc["retry_count"] == 0


async def test_success_after_start(store: Store) -> None:
    (a,) = await available(store, 1)
    (attempt,) = await claim(store, free=Resources(cores=0, memory=0), prefetch=1)
    key = attempt["execution_key"]
    await store.start_queued(a, key, time=5.0, caller=WORKER, worker="w1")
    await store.finish(
        a, key, exit_status=SUCCESS, exit_code=0, usage=None, caller=WORKER, worker="w1"
    )
    doc = await store.get_task(a)
    assert doc["state"] == "terminated" and doc["execution"]["time_started"] == 5.0


async def test_queued_attempts_keep_the_claim_time_bounds(store: Store) -> None:
    (later,) = await available(store, 1, not_before=time.time() + 3600)
    (long,) = await available(store, 1, time_limit=600)
    (fits,) = await available(store, 1, time_limit=60)
    found = await store.claim(
        worker="w1",
        token="w1",
        free=Resources(cores=0, memory=0),
        queues=["default"],
        limit=32,
        remaining_s=120,
        prefetch=8,
        capacity=ONE_CORE,
    )
    assert [(x["task"], x.get("queued")) for x in found] == [(fits, True)]
    assert found[0]["time_limit"] == 60
    for task in (later, long):
        assert (await store.get_task(task))["state"] == "available"


async def test_a_revoked_token_gets_no_queued_attempts(store: Store) -> None:
    await store.create_token("w1", Role.WORKER)
    (a,) = await available(store, 1)
    await store.revoke_token("w1")
    with pytest.raises(Unauthorized):
        await claim(store, free=Resources(cores=0, memory=0), prefetch=1)
    assert (await store.get_task(a))["state"] == "available"


async def test_unqueued_counts_no_abandonment_but_a_running_one_does(store: Store) -> None:
    await join(store)
    a, b = await available(store, 2, max_abandon_count=1)
    await claim(store, free=ONE_CORE, prefetch=1)
    await store.leave_worker("w1", lost=True)
    ran, held = await store.get_task(a), await store.get_task(b)
    assert ran["abandon_count"] == 1 and ran["state"] == "available"  # put back, counted
    assert held["state"] == "available"
    assert held["abandon_count"] == 0 and held["retry_count"] == 0
