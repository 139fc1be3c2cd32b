"""The Store's behaviour, shared by every backend: the ``store`` fixture
(``tests/store/conftest.py``) runs each test once per backend in
``server.stores.BACKENDS``. Written against the ``Store`` interface only: no
backend's internals (those tests live in ``test_sqlite_*.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from banyan.errors import Conflict, Forbidden, InvalidInput, NotFound, PreconditionFailed
from banyan.models import BulkPatchItem, ContinuationEdit, TaskCreate, TaskPatch
from banyan.resources import Resources
from banyan.states import ABANDONED, FAILURE, SUCCESS
from banyan.tokens import Caller, Role
from server.domain.idempotency import Submission, request_hash
from server.stores.base import Query, Store

ADMIN = Caller("admin", Role.ADMIN)
ALICE = Caller("alice", Role.PROVIDER)
BOB = Caller("bob", Role.PROVIDER)
WORKER = Caller("w1", Role.WORKER)
BIG = Resources(cores=64, memory=2**40)


async def new(store: Store, caller: Caller = ADMIN, **fields: Any) -> str:
    (meta,) = await store.create_tasks([TaskCreate.model_validate(fields)], caller)
    return str(meta["_id"])


async def state(store: Store, task_id: str) -> str:
    return str((await store.get_task(task_id))["state"])


async def patch(
    store: Store, task_id: str, caller: Caller = ADMIN, **changes: Any
) -> dict[str, Any]:
    return await store.update_task(task_id, TaskPatch.model_validate(changes), caller)


async def run(store: Store, *, limit: int = 10, free: Resources = BIG) -> list[dict[str, Any]]:
    return await store.claim(worker="w1", token="w1", free=free, queues=["default"], limit=limit)


async def finish(store: Store, attempt: dict[str, Any], status: str = SUCCESS) -> dict[str, Any]:
    """End ``attempt``; the task's document after it."""
    await store.finish(
        attempt["task"],
        attempt["execution_key"],
        exit_status=status,
        exit_code=0 if status == SUCCESS else 1,
        usage=None,
        caller=WORKER,
    )
    return await store.get_task(attempt["task"])


async def test_defaults(store: Store) -> None:
    doc = await store.get_task(await new(store, command="true"))
    assert doc["state"] == "inactive"
    assert doc["requested_resources"] == {"cores": 1, "memory": 0, "gpus": 0}
    assert doc["queue"] == "default" and doc["priority"] == 0
    assert doc["max_retry_count"] == 0 and doc["retry_count"] == 0
    assert doc["max_termination_time"] == 600
    assert doc["owner"] == "admin" and doc["execution"] is None


async def test_available_task_is_claimed_once(store: Store) -> None:
    task_id = await new(store, command="true", state="available")
    (attempt,) = await run(store)
    assert attempt["task"] == task_id and attempt["attempt"] == 1
    assert await run(store) == []
    assert await state(store, task_id) == "running"
    doc = await finish(store, attempt)
    assert doc["state"] == "terminated" and doc["execution"]["exit_status"] == SUCCESS


async def test_priority_then_age_skipping_what_does_not_fit(store: Store) -> None:
    old = await new(store, command="a", state="available")
    big = await new(
        store, command="b", state="available", priority=5, requested_resources={"cores": 8}
    )
    urgent = await new(store, command="c", state="available", priority=5)
    newer = await new(store, command="d", state="available")
    attempts = await run(store, limit=2, free=Resources(cores=2))
    assert [a["task"] for a in attempts] == [urgent, old]
    assert await state(store, big) == "available"
    assert await state(store, newer) == "available"


async def test_continuation_runs_after_parent_succeeds(store: Store) -> None:
    child = await new(store, command="child")
    parent = await new(store, command="parent", continuations=[child])
    assert (await store.get_task(child))["pending_dependency_count"] == 1
    with pytest.raises(Conflict, match="waits on 1 parent"):
        await patch(store, child, state="available")
    await patch(store, parent, state="available")
    (attempt,) = await run(store)
    assert attempt["task"] == parent
    await finish(store, attempt)
    child_doc = await store.get_task(child)
    assert child_doc["state"] == "available" and child_doc["pending_dependency_count"] == 0


async def test_diamond_waits_for_both_parents(store: Store) -> None:
    join = await new(store, command="join")
    left = await new(store, command="left", continuations=[join])
    right = await new(store, command="right", continuations=[join])
    await new(store, command="root", continuations=[left, right], state="available")
    (root_attempt,) = await run(store)
    await finish(store, root_attempt)
    branch = await run(store)
    assert sorted(a["task"] for a in branch) == sorted([left, right])
    await finish(store, branch[0])
    assert await state(store, join) == "inactive"
    await finish(store, branch[1])
    assert await state(store, join) == "available"


async def test_group_tasks_release_at_once_even_nested(store: Store) -> None:
    leaf = await new(store, command="leaf")
    inner = await new(store, name="inner group", continuations=[leaf])
    outer = await new(store, name="outer group", continuations=[inner])
    await patch(store, outer, state="available")
    assert await state(store, outer) == "terminated"
    assert await state(store, inner) == "terminated"
    assert (await store.get_task(inner))["execution"]["exit_status"] == SUCCESS
    assert await state(store, leaf) == "available"


async def test_bulk_tree_with_client_ids(store: Store) -> None:
    ids = ["a" * 24, "b" * 24, "c" * 24]
    items = [
        TaskCreate.model_validate({"_id": ids[0], "state": "available", "continuations": ids[1:]}),
        TaskCreate.model_validate({"_id": ids[1], "command": "x", "state": "available"}),
        TaskCreate.model_validate({"_id": ids[2], "command": "y"}),
    ]
    metas = await store.create_tasks(items, ADMIN)
    assert [m["_id"] for m in metas] == ids
    assert await state(store, ids[0]) == "terminated"  # a group: succeeds at once
    assert await state(store, ids[1]) == "available"
    assert await state(store, ids[2]) == "available"


async def test_bulk_is_all_or_nothing(store: Store) -> None:
    good = TaskCreate.model_validate({"command": "fine"})
    bad = TaskCreate.model_validate({"command": "bad", "continuations": ["f" * 24]})
    with pytest.raises(InvalidInput) as info:
        await store.create_tasks([good, bad], ADMIN)
    assert "1.continuations" in info.value.issues
    assert (await store.find_tasks(Query())).total == 0


async def test_cycles_rejected(store: Store) -> None:
    a = await new(store, command="a")
    b = await new(store, command="b", continuations=[a])
    with pytest.raises(InvalidInput, match="cycle"):
        await patch(store, a, add_continuations=[b])
    with pytest.raises(InvalidInput, match="cycle"):
        await patch(store, a, add_continuations=[a])
    ids = ["1" * 24, "2" * 24]
    loop = [
        TaskCreate.model_validate({"_id": ids[0], "continuations": [ids[1]]}),
        TaskCreate.model_validate({"_id": ids[1], "continuations": [ids[0]]}),
    ]
    with pytest.raises(InvalidInput, match="cycle"):
        await store.create_tasks(loop, ADMIN)


async def test_cancel_cascades_down_the_tree(store: Store) -> None:
    grandchild = await new(store, command="gc")
    child = await new(store, command="c", continuations=[grandchild])
    parent = await new(store, command="p", continuations=[child], state="available")
    await patch(store, parent, state="cancelled")
    for task_id in (parent, child, grandchild):
        assert await state(store, task_id) == "cancelled"


async def test_failure_retries_then_cancels_continuations(store: Store) -> None:
    child = await new(store, command="c")
    parent = await new(
        store, command="p", continuations=[child], state="available", max_retry_count=1
    )
    (first,) = await run(store)
    doc = await finish(store, first, FAILURE)
    assert doc["state"] == "available" and doc["retry_count"] == 1
    (second,) = await run(store)
    assert second["attempt"] == 2
    doc = await finish(store, second, FAILURE)
    assert doc["state"] == "terminated" and doc["execution"]["exit_status"] == FAILURE
    assert await state(store, child) == "cancelled"
    history = await store.history(parent)
    assert [h["exit_status"] for h in history] == [FAILURE, FAILURE]


async def test_retry_revives_the_cascade(store: Store) -> None:
    child = await new(store, command="c")
    parent = await new(store, command="p", continuations=[child], state="available")
    (attempt,) = await run(store)
    await finish(store, attempt, FAILURE)
    assert await state(store, child) == "cancelled"
    doc = await patch(store, parent, state="available")
    assert doc["state"] == "available" and doc["retry_count"] == 0
    assert await state(store, child) == "inactive"
    (again,) = await run(store)
    await finish(store, again)
    assert await state(store, child) == "available"
    with pytest.raises(Conflict, match="succeeded"):
        await patch(store, parent, state="available")


async def test_running_cancel_goes_through_the_worker(store: Store) -> None:
    child = await new(store, command="c")
    task_id = await new(
        store, command="sleep", continuations=[child], state="available", max_retry_count=3
    )
    (attempt,) = await run(store)
    # "cancelled" on a running task means pending_cancellation (SPEC §4, as the original).
    assert (await patch(store, task_id, state="cancelled"))["state"] == "pending_cancellation"
    assert (await patch(store, task_id, state="pending_cancellation"))["state"] == (
        "pending_cancellation"
    )
    doc = await finish(store, attempt, "cancelled")
    assert doc["state"] == "cancelled"
    assert await state(store, child) == "cancelled"


async def test_stale_key_refused_and_repeat_is_idempotent(store: Store) -> None:
    task_id = await new(store, command="x", state="available", max_retry_count=1)
    (first,) = await run(store)
    await store.abandon_worker("w1")
    doc = await store.get_task(task_id)
    assert doc["state"] == "available" and doc["execution"]["exit_status"] == ABANDONED
    (second,) = await run(store)
    with pytest.raises(Conflict, match=r"attempt 1 of task .* superseded .* now on attempt 2"):
        await finish(store, first)
    never = {**first, "execution_key": "never-handed-out"}
    with pytest.raises(Conflict, match="does not belong to any attempt of task"):
        await finish(store, never)
    await finish(store, second)
    again = await finish(store, second)  # the same report twice changes nothing
    # An abandonment uses the crash budget, not the retry budget.
    assert again["state"] == "terminated" and again["retry_count"] == 0
    assert again["abandon_count"] == 1


async def test_worker_may_only_report_its_own_attempts(store: Store) -> None:
    await new(store, command="x", state="available")
    (attempt,) = await run(store)
    with pytest.raises(Forbidden):
        await store.finish(
            attempt["task"],
            attempt["execution_key"],
            exit_status=SUCCESS,
            exit_code=0,
            usage=None,
            caller=Caller("w2", Role.WORKER),
        )


async def test_providers_change_only_their_own(store: Store) -> None:
    mine = await new(store, ALICE, command="x")
    with pytest.raises(Forbidden):
        await patch(store, mine, BOB, priority=3)
    assert (await patch(store, mine, ALICE, priority=3))["priority"] == 3
    theirs = await new(store, BOB, command="y")
    with pytest.raises(Forbidden):
        await store.create_tasks([TaskCreate(continuations=[theirs])], ALICE)


async def test_patch_merges_resources_and_checks_etag(store: Store) -> None:
    task_id = await new(store, command="x", requested_resources={"cores": 2, "memory": "1 GiB"})
    doc = await patch(store, task_id, requested_resources={"cores": 1})
    assert doc["requested_resources"] == {"cores": 1, "memory": 2**30, "gpus": 0}
    with pytest.raises(PreconditionFailed):
        await store.update_task(task_id, TaskPatch(priority=1), ADMIN, if_match="nope")
    ok = await store.update_task(task_id, TaskPatch(priority=1), ADMIN, if_match=doc["_etag"])
    assert ok["_etag"] != doc["_etag"]


async def test_execution_fields_frozen_while_running(store: Store) -> None:
    task_id = await new(store, command="x", state="available")
    await run(store)
    with pytest.raises(Conflict, match="command"):
        await patch(store, task_id, command="y")
    assert (await patch(store, task_id, name="renamed"))["name"] == "renamed"


async def test_bulk_patch_reports_per_item(store: Store) -> None:
    a = await new(store, command="a")
    items = [
        BulkPatchItem.model_validate({"_id": a, "state": "available"}),
        BulkPatchItem.model_validate({"_id": "e" * 24, "priority": 1}),
    ]
    ok, missing = await store.update_tasks(items, ADMIN)
    assert ok.doc is not None and ok.doc["state"] == "available"
    assert isinstance(missing.error, NotFound)


async def test_resource_level_continuation_edits(store: Store) -> None:
    parents = [await new(store, command="p1"), await new(store, command="p2")]
    child = await new(store, command="c", state="available")
    await store.edit_continuations(
        [ContinuationEdit(targets=parents, values=[child])], ADMIN, add=True
    )
    doc = await store.get_task(child)
    assert doc["state"] == "inactive" and doc["pending_dependency_count"] == 2
    await store.edit_continuations(
        [ContinuationEdit(targets=parents[:1], values=[child])], ADMIN, add=False
    )
    assert (await store.get_task(child))["pending_dependency_count"] == 1
    assert (await store.get_task(parents[0]))["continuations"] == []
    assert (await store.get_task(parents[1]))["continuations"] == [child]


async def test_every_change_appends_events_in_order(store: Store) -> None:
    start = await store.last_seq()
    task_id = await new(store, command="x", state="available")
    (attempt,) = await run(store)
    await finish(store, attempt)
    events = await store.events_since(start)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    kinds = [(e["type"], e["data"].get("state")) for e in events if e["data"]["_id"] == task_id]
    assert kinds == [
        ("task.created", "available"),
        ("task.state", "running"),
        ("task.state", "terminated"),
    ]


# --- idempotent submit (issue 11) ----------------------------------------------------


def _submission(key: str, body: str, retention_s: float = 3600.0) -> Submission:
    return Submission(key=key, request_hash=request_hash(body), retention_s=retention_s)


def _respond(created: list[Any]) -> tuple[int, Any]:
    return 201, {"ids": [c["_id"] for c in created]}


async def test_a_keyed_create_replays_its_answer_and_refuses_another_body(store: Store) -> None:
    items = [TaskCreate.model_validate({"command": "true"})] * 2
    first = await store.create_tasks_once(items, ALICE, _submission("k", "a"), _respond)
    again = await store.create_tasks_once(items, ALICE, _submission("k", "a"), _respond)
    assert not first.replayed and again.replayed
    assert (again.status, again.body) == (first.status, first.body)
    with pytest.raises(InvalidInput, match="different request"):
        await store.create_tasks_once(items, ALICE, _submission("k", "b"), _respond)
    bobs = await store.create_tasks_once(items, BOB, _submission("k", "a"), _respond)
    assert not bobs.replayed and bobs.body != first.body
    assert (await store.find_tasks(Query())).total == 4


async def test_a_keyed_create_that_fails_keeps_no_answer(store: Store) -> None:
    unknown = TaskCreate.model_validate({"command": "true", "continuations": ["0" * 24]})
    with pytest.raises(InvalidInput):
        await store.create_tasks_once([unknown], ALICE, _submission("k", "a"), _respond)
    good = [TaskCreate.model_validate({"command": "true"})]
    made = await store.create_tasks_once(good, ALICE, _submission("k", "a"), _respond)
    assert not made.replayed and (await store.find_tasks(Query())).total == 1


# --- workers: when they were heard from, when they went, forgetting them ---------------


async def join(store: Store, name: str) -> None:
    await store.join_worker(
        name=name, token="w1", capacity={"cores": 4}, queues=["default"], host="h", pid=1, held=[]
    )


async def worker_row(store: Store, name: str) -> dict[str, Any]:
    (found,) = await store.list_workers(name)
    return found


async def test_a_workers_containment_is_kept_from_its_join(store: Store) -> None:
    await join(store, "old")  # a worker that did not say
    await store.join_worker(
        name="new", token="w1", capacity={"cores": 4}, queues=["default"], host="h", pid=2,
        held=[], containment="cgroup",
    )  # fmt: skip
    assert (await worker_row(store, "old"))["containment"] is None
    assert (await worker_row(store, "new"))["containment"] == "cgroup"
    await join(store, "new")  # it joins again without saying: no longer known
    assert (await worker_row(store, "new"))["containment"] is None


async def test_last_seen_is_when_heard_from_not_when_declared_lost(store: Store) -> None:
    await join(store, "w1")
    joined = (await worker_row(store, "w1"))["last_seen"]
    heard = joined + 0.25
    await store.touch_workers({"w1": heard})
    await store.touch_workers({"w1": heard - 0.1})  # an older report never goes back
    assert (await worker_row(store, "w1"))["last_seen"] == heard
    await store.leave_worker("w1", lost=True)
    lost = await worker_row(store, "w1")
    assert lost["state"] == "lost"
    assert lost["last_seen"] == heard  # not the time it was declared lost
    assert lost["left"] is not None and lost["left"] >= joined


async def test_departed_workers_are_pruned_unless_they_hold_an_attempt(store: Store) -> None:
    for name in ("gone", "here", "holder"):
        await join(store, name)
    await store.leave_worker("gone", lost=True)
    await store.leave_worker("holder", lost=False)
    # A claim in the departed worker's name (as a report racing its loss could make).
    await new(store, command="x", state="available")
    (attempt,) = await store.claim(
        worker="holder", token="w1", free=BIG, queues=["default"], limit=1
    )
    went = (await worker_row(store, "gone"))["left"]
    assert await store.prune_workers(before=went) == []  # not before the retention ends
    assert await store.prune_workers(before=went + 1) == ["gone"]
    assert [w["name"] for w in await store.list_workers()] == ["here", "holder"]
    await store.leave_worker("holder", lost=True)  # abandons its attempt
    assert await store.prune_workers(before=went + 10**6) == ["holder"]
    history = await store.history(attempt["task"])
    assert [h["worker"] for h in history] == ["holder"]  # history keeps the name
