"""Bugs the scorecard found, pinned down deterministically on the store.

Server kill -9 during claims (``scenario_server``): the server committed a
claim, died before its ``assigned`` frame reached the worker, and when the
same worker process re-attached without naming that attempt, the attempt was
abandoned under the retry rule: with ``max_retry_count`` 0 the task ended
``terminated`` / ``abandoned (worker unreachable)`` without ever running.
"""

from __future__ import annotations

from typing import Any

from banyan.models import TaskCreate
from banyan.resources import Resources
from banyan.tokens import Caller, Role
from server.stores.sqlite.store import SqliteStore

OWNER = Caller("alice", Role.PROVIDER)
ABANDONED = "abandoned (worker unreachable)"


async def join(
    store: SqliteStore, pid: int, held: list[tuple[str, str]], *, same_process: bool = False
) -> Any:
    """``same_process``: what the gateway decides from the worker's secret."""
    return await store.join_worker(
        name="w1",
        token="w1",
        capacity=Resources(cores=2).canonical(),
        queues=["default"],
        host="h",
        pid=pid,
        held=held,
        same_process=same_process,
    )


async def claimed_task(store: SqliteStore) -> dict[str, Any]:
    (task,) = await store.create_tasks(
        [TaskCreate.model_validate({"command": "true", "state": "available"})], OWNER
    )
    await join(store, pid=100, held=[])
    claimed = await store.claim(
        worker="w1", token="w1", free=Resources(cores=2), queues=["default"], limit=1
    )
    assert len(claimed) == 1
    assert (await store.get_task(task["_id"]))["state"] == "running"
    return dict(task)


async def test_an_attempt_that_never_reached_the_worker_is_requeued_uncounted(
    store: SqliteStore,
) -> None:
    task = await claimed_task(store)
    # The same process comes back and does not name the attempt: it never got it.
    await join(store, pid=100, held=[], same_process=True)
    after = await store.get_task(task["_id"])
    assert after["state"] == "available", after
    assert after["retry_count"] == 0
    (first,) = await store.history(task["_id"])
    assert first["exit_status"] == ABANDONED


async def test_a_restarted_worker_s_attempts_follow_the_crash_budget(store: SqliteStore) -> None:
    task = await claimed_task(store)
    # A new process of the same worker: the old one ran the attempt and died with it.
    await join(store, pid=200, held=[])
    after = await store.get_task(task["_id"])
    # Counted against max_abandon_count (default 3), not max_retry_count (0).
    assert after["state"] == "available", after
    assert after["abandon_count"] == 1 and after["retry_count"] == 0
    assert after["execution"]["exit_status"] == ABANDONED
