"""Dependency kinds in the store (shared by every backend): retries of a
parent do not count an edge down twice, a skipped task's retry revives what
its skip cancelled, and links to ended parents keep their edge."""

from __future__ import annotations

from banyan.dependencies import SKIPPED
from banyan.models import ContinuationEdit
from banyan.states import FAILURE
from server.stores.base import Store
from tests.store.test_store import ADMIN, finish, new, patch, run, state


async def pending(store: Store, task_id: str) -> int:
    return int((await store.get_task(task_id))["pending_dependency_count"])


async def test_a_finished_child_is_counted_down_once_across_a_parent_retry(store: Store) -> None:
    other = await new(store, command="o")  # held: keeps the child waiting
    parent = await new(store, command="p", state="available")
    child = await new(store, command="c", run_when="finished")
    edit = ContinuationEdit(targets=[parent, other], values=[child])
    await store.edit_continuations([edit], ADMIN, add=True)
    (attempt,) = await run(store)
    await finish(store, attempt, FAILURE)
    assert await pending(store, child) == 1  # the failed parent ended: released
    await patch(store, parent, state="available")  # retried by its owner
    (attempt,) = await run(store)
    await finish(store, attempt)
    assert await pending(store, child) == 1  # not counted down again
    assert await state(store, child) == "inactive"


async def test_retrying_a_skipped_task_revives_what_its_skip_cancelled(store: Store) -> None:
    parent = await new(store, command="p", state="available")
    cleanup = await new(store, command="c", run_when="failure")
    after = await new(store, command="a")
    await store.edit_continuations(
        [
            ContinuationEdit(targets=[parent], values=[cleanup]),
            ContinuationEdit(targets=[cleanup], values=[after]),
        ],
        ADMIN,
        add=True,
    )
    (attempt,) = await run(store)
    await finish(store, attempt)
    doc = await store.get_task(cleanup)
    assert doc["state"] == "cancelled" and doc["execution"]["exit_status"] == SKIPPED
    assert await state(store, after) == "cancelled"
    await patch(store, cleanup, state="available")  # run it after all
    assert await state(store, after) == "inactive"  # waits for it again
    (attempt,) = await run(store)
    await finish(store, attempt)
    assert await state(store, after) == "available"


async def test_a_link_to_a_failed_parent_cancels_the_child_and_keeps_the_edge(
    store: Store,
) -> None:
    parent = await new(store, command="p", state="available")
    (attempt,) = await run(store)
    await finish(store, attempt, FAILURE)
    child = await new(store, command="c")
    edit = ContinuationEdit(targets=[parent], values=[child])
    await store.edit_continuations([edit], ADMIN, add=True)
    assert await state(store, child) == "cancelled"
    assert (await store.get_task(parent))["continuations"] == [child]
    assert await pending(store, child) == 1  # a retry of the parent revives it
    await patch(store, parent, state="available")
    assert await state(store, child) == "inactive"
