"""``POST /workers``: a provider's worker tokens live in its own namespace
(``<provider>:<name>``), so its answers never tell which other token names
exist; an admin names tokens freely and gets 409 for a name in use; a
revoked name is never given again."""

from __future__ import annotations

from typing import Any

from banyan.tokens import Role
from server.keys import STORE
from tests.conftest import Api
from tests.server.test_bad_input import assert_eve_error


def shape(body: Any) -> dict[str, Any]:
    """The answer without the (random) token."""
    return {k: v for k, v in body.items() if k != "token"}


async def test_a_provider_cannot_tell_whether_a_name_exists(api: Api) -> None:
    store = api.client.server.app[STORE]
    await store.create_token("gpu-1", Role.WORKER)  # exists
    await store.create_token("bob:gpu-2", Role.WORKER)  # another provider's
    revoked = "gpu-3"
    await store.create_token(revoked, Role.WORKER)
    await store.revoke_token(revoked)
    answers = {}
    for name in ("gpu-1", "gpu-2", "gpu-3", "never-used"):
        resp = await api.post("/workers", {"name": name}, as_="alice")
        assert resp.status == 201, resp
        assert resp.body["token"].startswith("byn_")
        answers[name] = shape(resp.body)
    assert answers == {
        name: {"_status": "OK", "name": f"alice:{name}", "role": "worker"} for name in answers
    }
    # The token works, as a worker named by it.
    token = (await api.post("/workers", {"name": "w9"}, as_="alice")).body["token"]
    api.tokens["w9"] = token
    assert (await api.get("/workers", as_="w9")).status == 200


async def test_a_provider_collides_only_with_its_own_names(api: Api) -> None:
    first = await api.post("/workers", {"name": "gpu-1"}, as_="alice")
    assert first.status == 201, first
    again = await api.post("/workers", {"name": "gpu-1"}, as_="alice")
    assert_eve_error(again, 409)
    assert "alice:gpu-1" in again.body["_error"]["message"]
    other = await api.post("/workers", {"name": "gpu-1"}, as_="bob")
    assert (other.status, other.body["name"]) == (201, "bob:gpu-1")


async def test_a_provider_may_not_name_into_another_namespace(api: Api) -> None:
    resp = await api.post("/workers", {"name": "x:gpu-1"}, as_="alice")
    assert "name" in assert_eve_error(resp, 422)
    resp = await api.post("/workers", {"name": "n" * 128}, as_="alice")
    assert "name" in assert_eve_error(resp, 422)


async def test_an_admin_names_freely_and_gets_409_for_a_name_in_use(api: Api) -> None:
    resp = await api.post("/workers", {"name": "rack-7"})
    assert (resp.status, resp.body["name"]) == (201, "rack-7")
    again = await api.post("/workers", {"name": "rack-7"})
    assert_eve_error(again, 409)
    assert "already exists" in again.body["_error"]["message"]


async def test_a_revoked_name_is_not_given_again(api: Api) -> None:
    resp = await api.post("/workers", {"name": "old"})
    assert resp.status == 201, resp
    await api.client.server.app[STORE].revoke_token("old")
    again = await api.post("/workers", {"name": "old"})
    assert_eve_error(again, 409)
    assert "revoked" in again.body["_error"]["message"]
    mine = await api.post("/workers", {"name": "w"}, as_="alice")
    await api.client.server.app[STORE].revoke_token(mine.body["name"])
    assert_eve_error(await api.post("/workers", {"name": "w"}, as_="alice"), 409)
