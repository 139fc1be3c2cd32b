"""The store's part in a worker's identity and in revocation (issue 11), on
every backend: the secret digest a join records and the proof it gates, the
token mark that changes with every revocation, and writes refused once their
token is revoked."""

from __future__ import annotations

import pytest

from banyan.errors import Unauthorized
from banyan.models import TaskCreate
from banyan.resources import Resources
from banyan.tokens import Caller, Role
from server.stores.base import Store

ADMIN = Caller("admin", Role.ADMIN)


async def join(store: Store, *, held: list[tuple[str, str]], same: bool, secret: str) -> object:
    return await store.join_worker(
        name="w1",
        token="w1",
        capacity=Resources(cores=4).canonical(),
        queues=["default"],
        host="h",
        pid=1,
        held=held,
        same_process=same,
        secret=secret,
    )


async def running_attempt(store: Store) -> tuple[str, str]:
    (task,) = await store.create_tasks(
        [TaskCreate.model_validate({"command": "true", "state": "available"})], ADMIN
    )
    (attempt,) = await store.claim(
        worker="w1", token="w1", free=Resources(cores=4), queues=["default"], limit=1
    )
    assert attempt["task"] == task["_id"]
    return attempt["task"], attempt["execution_key"]


async def test_a_join_records_the_secret_digest_and_the_open_attempts(store: Store) -> None:
    assert await store.worker_identity("w1") is None
    await join(store, held=[], same=False, secret="d1")
    assert await store.worker_identity("w1") == ("d1", 0)
    await running_attempt(store)
    assert await store.worker_identity("w1") == ("d1", 1)


async def test_only_the_same_process_re_attaches(store: Store) -> None:
    await join(store, held=[], same=False, secret="d1")
    task, key = await running_attempt(store)
    # Another process names the attempt, key and all: it does not go on.
    resumed, dropped = await join(store, held=[(task, key)], same=False, secret="d2")
    assert (resumed, dropped) == ([], [task])
    assert (await store.get_task(task))["execution"]["exit_status"] is not None
    assert await store.worker_identity("w1") == ("d2", 0)


async def test_the_same_process_goes_on(store: Store) -> None:
    await join(store, held=[], same=False, secret="d1")
    task, key = await running_attempt(store)
    resumed, dropped = await join(store, held=[(task, key)], same=True, secret="d2")
    assert (resumed, dropped) == ([task], [])
    assert (await store.get_task(task))["state"] == "running"


async def test_the_token_mark_changes_with_a_revocation_and_writes_are_refused(
    store: Store,
) -> None:
    await store.create_token("w1", Role.WORKER)
    await join(store, held=[], same=False, secret="d1")
    task, key = await running_attempt(store)
    before = await store.token_mark()
    assert await store.live_token_names(["w1", "nobody"]) == {"w1"}
    await store.revoke_token("w1")
    assert await store.token_mark() != before
    assert await store.live_token_names(["w1"]) == set()
    with pytest.raises(Unauthorized):
        await store.finish(
            task,
            key,
            exit_status="success",
            exit_code=0,
            usage=None,
            caller=Caller("w1", Role.WORKER),
            worker="w1",
        )
    with pytest.raises(Unauthorized):
        await store.claim(
            worker="w1", token="w1", free=Resources(cores=4), queues=["default"], limit=1
        )
    assert (await store.get_task(task))["state"] == "running"
