"""Hostile and mistaken input against the live server (SPEC §5, "Errors").

Every bad request must get Eve's error shape with the documented status, never
a 500 or a traceback, and must leave the data exactly as it was: each test
that sends something bad first records the tasks, then checks they did not
change.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from banyan.models import NOT_NULL_PATCH_FIELDS
from banyan.resources import Resources
from banyan.tokens import Role, basic_auth_header
from server.app import create_app
from server.keys import STORE
from server.settings import Settings
from tests.conftest import Api, Response

BIG = Resources(cores=64, memory=2**40)
UNKNOWN_ID = "0123456789abcdef01234567"


# --- helpers --------------------------------------------------------------------------------


def assert_eve_error(resp: Response, status: int) -> dict[str, Any]:
    """``resp`` is Eve's error body with ``status``; returns its ``_issues`` (maybe empty)."""
    assert resp.status == status, resp
    assert isinstance(resp.body, dict), resp
    assert resp.body.get("_status") == "ERR", resp
    error = resp.body.get("_error")
    assert isinstance(error, dict), resp
    assert error.get("code") == status, resp
    assert isinstance(error.get("message"), str) and error["message"], resp
    text = json.dumps(resp.body)
    assert "Traceback" not in text, resp
    assert 'File "' not in text, resp
    issues = resp.body.get("_issues", {})
    assert isinstance(issues, dict), resp
    if status == 422:
        # 422 is "the content is wrong": the body must say where.
        assert issues, f"a 422 without _issues: {resp}"
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in issues.items()), resp
    return dict(issues)


async def all_tasks(api: Api) -> list[dict[str, Any]]:
    resp = await api.get("/tasks", params={"max_results": "1000", "sort": "_id"})
    assert resp.status == 200, resp
    return list(resp.body["_items"])


class Snapshot:
    """Every task as it was; ``check`` asserts nothing was created, changed or lost."""

    def __init__(self, api: Api, tasks: list[dict[str, Any]]) -> None:
        self.api = api
        self.tasks = tasks

    @classmethod
    async def take(cls, api: Api) -> Snapshot:
        return cls(api, await all_tasks(api))

    async def check(self) -> None:
        assert await all_tasks(self.api) == self.tasks


@pytest.fixture
async def task_id(api: Api) -> str:
    """One inactive task of alice's, the target of the PATCH cases."""
    return await api.submit(as_="alice", name="victim", command="echo hi")


@pytest.fixture
async def running_id(api: Api) -> str:
    """A task a worker has claimed (running, held by the "worker" token)."""
    the_id = await api.submit(as_="alice", name="runner", command="sleep 1", state="available")
    claimed = await api.client.app[STORE].claim(
        worker="worker-1", token="worker-1", free=BIG, queues=["default"], limit=1
    )
    assert [c["task"] for c in claimed] == [the_id]
    return the_id


MakeApi = Callable[..., Awaitable[Api]]


@pytest.fixture
async def make_api(
    aiohttp_client: Callable[..., Awaitable[TestClient]], settings: Settings, tmp_path: Path
) -> AsyncIterator[MakeApi]:
    """A second server with some settings changed (its own database file)."""

    async def make(**overrides: Any) -> Api:
        custom = settings.model_copy(update={"db": tmp_path / "custom.db", **overrides})
        app = create_app(custom)
        client = await aiohttp_client(app)
        store = app[STORE]
        tokens = {
            "admin": await store.create_token("admin", Role.ADMIN),
            "alice": await store.create_token("alice", Role.PROVIDER),
            "worker": await store.create_token("worker-1", Role.WORKER),
        }
        return Api(client, tokens)

    yield make


# --- malformed and empty bodies --------------------------------------------------------------

# Where a body goes. ``{id}`` is replaced by the fixture task's id.
WRITE_ENDPOINTS = [
    ("POST", "/tasks"),
    ("PATCH", "/tasks/{id}"),
    ("PATCH", "/tasks"),
    ("POST", "/memory_usage"),
    ("POST", "/tasks/add_continuations"),
    ("POST", "/tasks/remove_continuations"),
]

# Not JSON at all, whatever the first character promises: the object-looking
# ones reach list endpoints and the list-looking ones reach object endpoints.
MALFORMED = [
    pytest.param('{"name": ', id="truncated-object"),
    pytest.param('[{"command": "x"', id="truncated-list"),
    pytest.param("{'command': 'x'}", id="single-quotes"),
    pytest.param('{"command": "x",}', id="trailing-comma"),
    pytest.param('[{"command": "x"},]', id="trailing-comma-list"),
    pytest.param("nul", id="bare-word"),
    pytest.param('{"priority": NaN}', id="nan"),
    pytest.param(b'{"name": "\xff\xfe"}', id="invalid-utf8"),
    pytest.param("}{", id="backwards"),
]


@pytest.mark.parametrize(("method", "path"), WRITE_ENDPOINTS)
@pytest.mark.parametrize("raw", MALFORMED)
async def test_malformed_json_is_400(
    api: Api, task_id: str, method: str, path: str, raw: str | bytes
) -> None:
    before = await Snapshot.take(api)
    resp = await api.request(method, path.format(id=task_id), raw=raw)
    assert_eve_error(resp, 400)
    await before.check()


@pytest.mark.parametrize(("method", "path"), WRITE_ENDPOINTS)
@pytest.mark.parametrize("raw", ["", "   \n\t "], ids=["empty", "whitespace"])
async def test_empty_body_is_400(api: Api, task_id: str, method: str, path: str, raw: str) -> None:
    before = await Snapshot.take(api)
    resp = await api.request(method, path.format(id=task_id), raw=raw)
    assert_eve_error(resp, 400)
    await before.check()


@pytest.mark.parametrize(("method", "path"), WRITE_ENDPOINTS)
@pytest.mark.parametrize("raw", ["42", '"a string"', "true", "null", "-1.5e3"])
async def test_json_scalar_body_is_422(
    api: Api, task_id: str, method: str, path: str, raw: str
) -> None:
    # Well-formed JSON of the wrong shape is bad content, not bad syntax.
    before = await Snapshot.take(api)
    resp = await api.request(method, path.format(id=task_id), raw=raw)
    assert_eve_error(resp, 422)
    await before.check()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("PATCH", "/tasks/{id}", [{"priority": 1}], id="list-to-one-item"),
        pytest.param("PATCH", "/tasks", {"_id": UNKNOWN_ID, "priority": 1}, id="object-to-bulk"),
        pytest.param(
            "POST", "/tasks/add_continuations", {"targets": [], "values": []}, id="object-to-edit"
        ),
        pytest.param("POST", "/tasks", [1, 2], id="list-of-numbers"),
        pytest.param("POST", "/tasks", [[{"command": "x"}]], id="nested-list"),
    ],
)
async def test_body_of_the_wrong_shape_is_422(
    api: Api, task_id: str, method: str, path: str, body: Any
) -> None:
    before = await Snapshot.take(api)
    resp = await api.request(method, path.format(id=task_id), body)
    assert_eve_error(resp, 422)
    await before.check()


# --- wrong types, unknown and read-only fields --------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"command": 5}, "command"),
        ({"command": ["echo", "hi"]}, "command"),
        ({"command": ""}, "command"),
        ({"command": "x", "priority": "high"}, "priority"),
        ({"command": "x", "priority": 1.5}, "priority"),
        ({"command": "x", "priority": 2**40}, "priority"),
        ({"command": "x", "state": 5}, "state"),
        ({"command": "x", "state": "bogus"}, "state"),
        ({"command": "x", "state": "running"}, "state"),  # users create inactive or available
        ({"command": "x", "name": ["a"]}, "name"),
        ({"command": "x", "queue": 7}, "queue"),
        ({"command": "x", "queue": ""}, "queue"),
        ({"command": "x", "queue": "has space"}, "queue"),
        ({"command": "x", "max_retry_count": -1}, "max_retry_count"),
        ({"command": "x", "continuations": "abc"}, "continuations"),
        ({"command": "x", "continuations": [5]}, "continuations.0"),
        ({"command": "x", "continuations": ["not-an-id"]}, "continuations.0"),
        ({"command": "x", "env": {"A": 1}}, "env.A"),
        ({"command": "x", "env": ["A=1"]}, "env"),
        ({"command": "x", "cwd": 3}, "cwd"),
        ({"command": "x", "requested_resources": "lots"}, "requested_resources"),
        ({"command": "x", "_id": "xyz"}, "_id"),
    ],
)
async def test_wrong_type_on_create_is_422_naming_the_field(
    api: Api, task_id: str, body: dict[str, Any], field: str
) -> None:
    before = await Snapshot.take(api)
    issues = assert_eve_error(await api.post("/tasks", body), 422)
    assert field in issues, issues
    await before.check()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"command": 5}, "command"),
        ({"priority": "high"}, "priority"),
        ({"state": 5}, "state"),
        ({"state": "bogus"}, "state"),
        ({"name": {"first": "x"}}, "name"),
        ({"max_retry_count": "many"}, "max_retry_count"),
        ({"add_continuations": "abc"}, "add_continuations"),
        ({"requested_resources": [1]}, "requested_resources"),
    ],
)
async def test_wrong_type_on_patch_is_422_naming_the_field(
    api: Api, task_id: str, body: dict[str, Any], field: str
) -> None:
    before = await Snapshot.take(api)
    issues = assert_eve_error(await api.patch(f"/tasks/{task_id}", body), 422)
    assert field in issues, issues
    await before.check()


@pytest.mark.parametrize(
    ("method", "path", "body", "key"),
    [
        ("POST", "/tasks", {"command": "x", "colour": "red"}, "colour"),
        ("POST", "/tasks", {"command": "x", "Name": "capitalised"}, "Name"),
        (
            "POST",
            "/tasks",
            {"command": "x", "requested_resources": {"gpus": [{"memory": "8 GiB", "kind": "A"}]}},
            "requested_resources.gpus.0.kind",
        ),
        ("PATCH", "/tasks/{id}", {"colour": "red"}, "colour"),
        ("PATCH", "/tasks", [{"_id": "{id}", "colour": "red"}], "0.colour"),
        (
            "POST",
            "/memory_usage",
            {"task": "{id}", "time": 1, "resident_memory_bytes": 1, "colour": "red"},
            "colour",
        ),
        (
            "POST",
            "/tasks/add_continuations",
            [{"targets": ["{id}"], "values": ["{id}"], "colour": "red"}],
            "0.colour",
        ),
    ],
)
async def test_unknown_field_is_422_unknown_field(
    api: Api, task_id: str, method: str, path: str, body: Any, key: str
) -> None:
    before = await Snapshot.take(api)
    filled = json.loads(json.dumps(body).replace("{id}", task_id))
    issues = assert_eve_error(await api.request(method, path.format(id=task_id), filled), 422)
    assert issues.get(key) == "unknown field", issues
    await before.check()


READ_ONLY = {
    "retry_count": 3,
    "pending_dependency_count": 0,
    "owner": "mallory",
    "execution": {"worker": "w", "exit_status": "success"},
    "_etag": "abc",
    "_created": "Tue, 01 Dec 2026 09:38:27 GMT",
    "_updated": "Tue, 01 Dec 2026 09:38:27 GMT",
}


@pytest.mark.parametrize(("field", "value"), READ_ONLY.items())
async def test_read_only_field_on_create_is_422(
    api: Api, task_id: str, field: str, value: Any
) -> None:
    before = await Snapshot.take(api)
    issues = assert_eve_error(await api.post("/tasks", {"command": "x", field: value}), 422)
    assert issues.get(field) == "read-only field", issues
    await before.check()


@pytest.mark.parametrize(("field", "value"), READ_ONLY.items())
async def test_read_only_field_on_patch_is_422(
    api: Api, task_id: str, field: str, value: Any
) -> None:
    before = await Snapshot.take(api)
    issues = assert_eve_error(await api.patch(f"/tasks/{task_id}", {field: value}), 422)
    assert issues.get(field) == "read-only field", issues
    await before.check()


async def test_patch_cannot_change_the_id(api: Api, task_id: str) -> None:
    before = await Snapshot.take(api)
    issues = assert_eve_error(await api.patch(f"/tasks/{task_id}", {"_id": UNKNOWN_ID}), 422)
    assert "_id" in issues, issues
    await before.check()


# Found by schemathesis (tests/fuzz): null for a field stored NOT NULL (queue,
# priority, max_retry_count, max_termination_time) was a 500 "NOT NULL constraint
# failed", and null continuations a TypeError. Leaving a field out keeps it; null is 422.
@pytest.mark.parametrize("field", NOT_NULL_PATCH_FIELDS)
async def test_null_for_a_non_nullable_field_on_patch_is_422(
    api: Api, task_id: str, field: str
) -> None:
    before = await Snapshot.take(api)
    issues = assert_eve_error(await api.patch(f"/tasks/{task_id}", {field: None}), 422)
    assert issues.get(field, "").startswith("may not be null"), issues
    await before.check()


@pytest.mark.parametrize("field", NOT_NULL_PATCH_FIELDS)
async def test_null_for_a_non_nullable_field_on_bulk_patch_is_422(
    api: Api, task_id: str, field: str
) -> None:
    before = await Snapshot.take(api)
    body = [{"_id": task_id, "priority": 1}, {"_id": task_id, field: None}]
    issues = assert_eve_error(await api.patch("/tasks", body), 422)
    assert f"1.{field}" in issues, issues
    await before.check()


async def test_null_clears_a_nullable_field_on_patch(api: Api) -> None:
    the_id = await api.submit(
        as_="alice", name="n", command="true", cwd="/tmp", env={"A": "1"}, estimated_runtime=5
    )
    changes = {"name": None, "cwd": None, "env": None, "estimated_runtime": None, "command": None}
    resp = await api.patch(f"/tasks/{the_id}", changes, as_="alice")
    assert resp.status == 200, resp
    doc = await api.task(the_id)
    assert all(doc.get(field) is None for field in changes), doc


# --- units, negative amounts, lengths, list sizes ----------------------------------------------

BAD_UNITS = [
    pytest.param({"requested_resources": {"memory": "12 XB"}}, "requested_resources.memory"),
    pytest.param({"requested_resources": {"memory": "lots"}}, "requested_resources.memory"),
    pytest.param({"requested_resources": {"memory": -1}}, "requested_resources.memory"),
    pytest.param({"requested_resources": {"memory": "-5 GiB"}}, "requested_resources.memory"),
    pytest.param({"requested_resources": {"memory": 1.5}}, "requested_resources.memory"),
    pytest.param({"requested_resources": {"memory": 10**30}}, "requested_resources.memory"),
    pytest.param({"requested_resources": {"cores": -1}}, "requested_resources.cores"),
    pytest.param({"requested_resources": {"cores": "many"}}, "requested_resources.cores"),
    pytest.param({"requested_resources": {"cores": 1e300}}, "requested_resources.cores"),
    pytest.param(
        {"requested_resources": {"cores": {"count": 2, "percent": 150}}},
        "requested_resources.cores",
    ),
    pytest.param({"requested_resources": {"gpus": -1}}, "requested_resources.gpus"),
    pytest.param({"requested_resources": {"gpus": "two"}}, "requested_resources.gpus"),
    pytest.param(
        {"requested_resources": {"gpus": [{"memory": "8 XB"}]}},
        "requested_resources.gpus.0.memory",
    ),
    pytest.param({"requested_resources": {"licences": "two"}}, "requested_resources.licences"),
    pytest.param({"requested_resources": {"licences": -2}}, "requested_resources.licences"),
    pytest.param({"max_termination_time": "soon"}, "max_termination_time"),
    pytest.param({"max_termination_time": -5}, "max_termination_time"),
    pytest.param({"estimated_runtime": "a while"}, "estimated_runtime"),
    pytest.param({"estimated_runtime": "100 years"}, "estimated_runtime"),
]


@pytest.mark.parametrize(("fields", "key"), BAD_UNITS)
async def test_bad_unit_on_create_is_422_at_the_dotted_path(
    api: Api, task_id: str, fields: dict[str, Any], key: str
) -> None:
    before = await Snapshot.take(api)
    issues = assert_eve_error(await api.post("/tasks", {"command": "x", **fields}), 422)
    assert key in issues, issues
    await before.check()


@pytest.mark.parametrize(("fields", "key"), BAD_UNITS)
async def test_bad_unit_on_patch_is_422_at_the_dotted_path(
    api: Api, task_id: str, fields: dict[str, Any], key: str
) -> None:
    # PATCH merges requested_resources into the stored request; a bad value must
    # still be named by its own path, as on POST.
    before = await Snapshot.take(api)
    issues = assert_eve_error(await api.patch(f"/tasks/{task_id}", fields), 422)
    assert key in issues, issues
    await before.check()


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"name": "n" * 1025}, "name"),
        ({"queue": "q" * 129}, "queue"),
        ({"command": "c" * (128 * 1024 + 1)}, "command"),
        ({"cwd": "/" + "d" * 4096}, "cwd"),
        ({"env": {"A": "v" * (32 * 1024 + 1)}}, "env.A"),
        ({"env": {"K" * 257: "v"}}, "env"),
    ],
    ids=["name", "queue", "command", "cwd", "env-value", "env-key"],
)
async def test_too_long_string_is_422(
    api: Api, task_id: str, fields: dict[str, Any], key: str
) -> None:
    before = await Snapshot.take(api)
    issues = assert_eve_error(await api.post("/tasks", {"command": "x", **fields}), 422)
    assert key in issues, issues
    await before.check()


NUL_FIELDS = [
    ({"name": "a\x00b"}, "name"),
    ({"command": "echo a\x00b"}, "command"),
    ({"cwd": "/tmp\x00/x"}, "cwd"),
    ({"queue": "q\x00"}, "queue"),
    ({"env": {"A": "a\x00b"}}, "env.A"),
    ({"env": {"A\x00B": "v"}}, "env"),
]
NUL_IDS = ["name", "command", "cwd", "queue", "env-value", "env-key"]


@pytest.mark.parametrize(("fields", "key"), NUL_FIELDS, ids=NUL_IDS)
async def test_nul_is_422_naming_the_field(
    api: Api, task_id: str, fields: dict[str, Any], key: str
) -> None:
    # A NUL cannot reach a process (argv, env and paths are C strings).
    before = await Snapshot.take(api)
    for body in ({"command": "x", **fields}, [{"command": "x"}, {"command": "x", **fields}]):
        issues = assert_eve_error(await api.post("/tasks", body), 422)
        prefix = "1." if isinstance(body, list) else ""
        assert any(k.startswith(prefix + key) for k in issues), issues
    issues = assert_eve_error(await api.patch(f"/tasks/{task_id}", fields), 422)
    assert any(k.startswith(key) for k in issues), issues
    await before.check()


async def test_env_over_its_total_is_422(api: Api, task_id: str) -> None:
    before = await Snapshot.take(api)
    env = {f"V{i}": "v" * 32_000 for i in range(33)}  # 1,056,099 characters
    body = json.dumps({"command": "x", "env": env}).encode()
    headers = {"Authorization": basic_auth_header(api.tokens["alice"])}
    headers["Content-Type"] = "application/json"
    async with api.client.post("/tasks", data=io.BytesIO(body), headers=headers) as resp:
        parsed = Response(resp.status, await resp.json(), CIMultiDict(resp.headers))
    issues = assert_eve_error(parsed, 422)
    assert "1048576" in issues["env"], issues
    await before.check()


async def test_env_at_its_limits_is_accepted(api: Api) -> None:
    # A 256-character name, 32 KiB values, just under 1 MiB in all.
    env = {"K" * 256: "v"} | {f"V{i}": "v" * (32 * 1024) for i in range(30)}
    assert sum(len(k) + len(v) for k, v in env.items()) <= 1024 * 1024
    task = await api.task(await api.submit(command="x", env=env))
    assert task["env"] == env


async def test_strings_at_the_limit_are_accepted(api: Api) -> None:
    # The limits are inclusive: 1024 characters of name, 128 of queue.
    the_id = await api.submit(command="x", name="n" * 1024, queue="q" * 128)
    task = await api.task(the_id)
    assert (len(task["name"]), len(task["queue"])) == (1024, 128)


async def test_too_long_name_on_patch_is_422(api: Api, task_id: str) -> None:
    before = await Snapshot.take(api)
    issues = assert_eve_error(await api.patch(f"/tasks/{task_id}", {"name": "n" * 1025}), 422)
    assert "name" in issues, issues
    await before.check()


def many_ids(count: int) -> list[str]:
    return [f"{i:024x}" for i in range(count)]


@pytest.mark.parametrize(
    ("method", "path", "body", "key"),
    [
        ("POST", "/tasks", {"command": "x", "continuations": many_ids(10_001)}, "continuations"),
        ("PATCH", "/tasks/{id}", {"continuations": many_ids(10_001)}, "continuations"),
        ("PATCH", "/tasks/{id}", {"add_continuations": many_ids(10_001)}, "add_continuations"),
        (
            "POST",
            "/tasks/add_continuations",
            [{"targets": many_ids(10_001), "values": [UNKNOWN_ID]}],
            "0.targets",
        ),
        (
            "POST",
            "/tasks/remove_continuations",
            [{"targets": [UNKNOWN_ID], "values": many_ids(10_001)}],
            "0.values",
        ),
    ],
    ids=["create", "patch", "patch-add", "add-targets", "remove-values"],
)
async def test_oversized_id_list_is_422(
    api: Api, task_id: str, method: str, path: str, body: Any, key: str
) -> None:
    before = await Snapshot.take(api)
    issues = assert_eve_error(await api.request(method, path.format(id=task_id), body), 422)
    assert key in issues, issues
    await before.check()


# --- bulk requests ---------------------------------------------------------------------------


async def test_bulk_create_with_item_3_invalid_creates_nothing(api: Api, task_id: str) -> None:
    before = await Snapshot.take(api)
    items: list[dict[str, Any]] = [{"command": f"echo {i}"} for i in range(6)]
    items[3] = {"command": 5, "requested_resources": {"memory": "12 XB"}}
    issues = assert_eve_error(await api.post("/tasks", items), 422)
    assert issues, issues
    assert all(key.startswith("3.") for key in issues), issues
    assert {"3.command", "3.requested_resources.memory"} <= issues.keys(), issues
    await before.check()


async def test_bulk_create_repeating_a_bad_item_names_every_place_it_is(api: Api) -> None:
    """Equal items are validated once (``validate_items``); the errors are
    still the whole list's, one per bad place, and nothing is made."""
    before = await Snapshot.take(api)
    good, bad = {"command": "true"}, {"command": "true", "priority": "high"}
    issues = assert_eve_error(await api.post("/tasks", [good, bad, good, good, bad]), 422)
    assert issues.keys() == {"1.priority", "4.priority"}, issues
    await before.check()
    made = await api.post("/tasks", [good, {**good, "name": "x"}, good])
    assert made.status == 201, made
    names = [(await api.task(i["_id"]))["name"] for i in made.body["_items"]]
    assert names == [None, "x", None]


async def test_bulk_create_with_item_3_naming_an_unknown_continuation_creates_nothing(
    api: Api, task_id: str
) -> None:
    # Valid on its own, refused by the store: the whole request still rolls back.
    before = await Snapshot.take(api)
    items: list[dict[str, Any]] = [{"command": f"echo {i}"} for i in range(6)]
    items[3]["continuations"] = [UNKNOWN_ID]
    issues = assert_eve_error(await api.post("/tasks", items), 422)
    assert list(issues) == ["3.continuations"], issues
    await before.check()


async def test_single_create_issue_keys_have_no_index(api: Api, task_id: str) -> None:
    before = await Snapshot.take(api)
    issues = assert_eve_error(
        await api.post("/tasks", {"command": 5, "requested_resources": {"cores": -1}}), 422
    )
    assert {"command", "requested_resources.cores"} <= issues.keys(), issues
    assert not any(key.split(".")[0].isdigit() for key in issues), issues
    await before.check()


async def test_single_create_store_issue_keys_have_no_index(api: Api, task_id: str) -> None:
    before = await Snapshot.take(api)
    issues = assert_eve_error(
        await api.post("/tasks", {"command": "x", "continuations": [UNKNOWN_ID]}), 422
    )
    assert list(issues) == ["continuations"], issues
    await before.check()


async def test_bulk_patch_item_issue_keys_carry_the_index(api: Api, task_id: str) -> None:
    before = await Snapshot.take(api)
    body = [{"_id": task_id, "priority": 1}, {"_id": task_id, "priority": "high"}]
    issues = assert_eve_error(await api.patch("/tasks", body), 422)
    assert "1.priority" in issues, issues
    await before.check()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/tasks", []),
        ("PATCH", "/tasks", []),
        ("POST", "/memory_usage", []),
        ("POST", "/tasks/add_continuations", []),
        ("POST", "/tasks/remove_continuations", []),
    ],
)
async def test_empty_list_is_422(
    api: Api, task_id: str, method: str, path: str, body: list[Any]
) -> None:
    before = await Snapshot.take(api)
    assert_eve_error(await api.request(method, path, body), 422)
    await before.check()


@pytest.mark.parametrize(
    ("method", "path", "item"),
    [
        ("POST", "/tasks", {"command": "x"}),
        ("PATCH", "/tasks", {"_id": UNKNOWN_ID, "priority": 1}),
        ("POST", "/memory_usage", {"task": UNKNOWN_ID, "time": 1, "resident_memory_bytes": 1}),
        ("POST", "/tasks/add_continuations", {"targets": [UNKNOWN_ID], "values": [UNKNOWN_ID]}),
    ],
)
async def test_bulk_over_the_limit_is_422_and_creates_nothing(
    make_api: MakeApi, method: str, path: str, item: dict[str, Any]
) -> None:
    small = await make_api(max_bulk_items=3)
    before = await Snapshot.take(small)
    issues = assert_eve_error(await small.request(method, path, [item] * 4), 422)
    assert "body" in issues, issues
    await before.check()


async def test_bulk_at_the_limit_is_accepted(make_api: MakeApi) -> None:
    small = await make_api(max_bulk_items=3)
    resp = await small.post("/tasks", [{"command": "x"}] * 3)
    assert resp.status == 201, resp
    assert len(await all_tasks(small)) == 3


# --- body size -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/tasks"),
        ("PATCH", "/tasks/{id}"),
        ("PATCH", "/tasks"),
        ("POST", "/memory_usage"),
        ("POST", "/tasks/add_continuations"),
    ],
)
async def test_body_over_max_body_bytes_is_413(make_api: MakeApi, method: str, path: str) -> None:
    small = await make_api(max_body_bytes=2048)
    the_id = await small.submit(command="x")
    before = await Snapshot.take(small)
    raw = json.dumps({"command": "x", "name": "n" * 3000})
    assert_eve_error(await small.request(method, path.format(id=the_id), raw=raw), 413)
    await before.check()


async def test_chunked_body_over_max_body_bytes_is_413(make_api: MakeApi) -> None:
    # No Content-Length to trust: the limit must hold while the body streams in.
    small = await make_api(max_body_bytes=2048)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'[{"command": "x", "name": "'
        for _ in range(10):
            yield b"n" * 500
        yield b'"}]'

    before = await Snapshot.take(small)
    assert_eve_error(await small.request("POST", "/tasks", raw=chunks()), 413)  # type: ignore[arg-type]
    await before.check()


async def test_body_under_max_body_bytes_is_accepted(make_api: MakeApi) -> None:
    small = await make_api(max_body_bytes=2048)
    resp = await small.post("/tasks", {"command": "x", "name": "n" * 1000})
    assert resp.status == 201, resp


# --- ids in the path ---------------------------------------------------------------------------

ID_PATHS = [
    ("GET", "/tasks/{id}"),
    ("PATCH", "/tasks/{id}"),
    ("GET", "/tasks/{id}/history"),
]


@pytest.mark.parametrize(("method", "path"), ID_PATHS)
@pytest.mark.parametrize("the_id", [UNKNOWN_ID, "f" * 24])
async def test_unknown_id_is_404(
    api: Api, task_id: str, method: str, path: str, the_id: str
) -> None:
    before = await Snapshot.take(api)
    body = {"priority": 1} if method == "PATCH" else None
    assert_eve_error(await api.request(method, path.format(id=the_id), body), 404)
    await before.check()


@pytest.mark.parametrize(("method", "path"), ID_PATHS)
@pytest.mark.parametrize(
    "the_id",
    ["not-an-id", "z" * 24, "123", "0" * 25, "%00", "..%2F..%2Fetc", "0123456789abcdef0123456g"],
)
async def test_non_hex_id_in_the_path_is_404(
    api: Api, task_id: str, method: str, path: str, the_id: str
) -> None:
    before = await Snapshot.take(api)
    body = {"priority": 1} if method == "PATCH" else None
    assert_eve_error(await api.request(method, path.format(id=the_id), body), 404)
    await before.check()


# --- state machine, cycles, If-Match --------------------------------------------------------------


@pytest.mark.parametrize("target", ["running", "terminated", "pending_cancellation"])
async def test_illegal_transition_from_inactive_is_409_naming_the_state(
    api: Api, task_id: str, target: str
) -> None:
    before = await Snapshot.take(api)
    resp = await api.patch(f"/tasks/{task_id}", {"state": target})
    assert_eve_error(resp, 409)
    assert "inactive" in resp.body["_error"]["message"], resp
    await before.check()


async def test_cancelled_on_a_running_task_means_pending_cancellation(
    api: Api, running_id: str
) -> None:
    # As the original Banyan: "cancelled" asks the worker to stop it (SPEC §4).
    resp = await api.patch(f"/tasks/{running_id}", {"state": "cancelled"})
    assert resp.status == 200, resp
    assert (await api.get(f"/tasks/{running_id}")).body["state"] == "pending_cancellation"
    again = await api.patch(f"/tasks/{running_id}", {"state": "cancelled"})
    assert again.status == 200, again  # already stopping: nothing more to do
    assert (await api.get(f"/tasks/{running_id}")).body["state"] == "pending_cancellation"


@pytest.mark.parametrize("target", ["inactive", "available", "terminated"])
async def test_running_task_refuses_user_transitions(
    api: Api, running_id: str, target: str
) -> None:
    before = await Snapshot.take(api)
    resp = await api.patch(f"/tasks/{running_id}", {"state": target})
    assert_eve_error(resp, 409)
    assert "running" in resp.body["_error"]["message"], resp
    await before.check()


async def test_illegal_transition_leaves_other_fields_of_the_patch_unapplied(
    api: Api, task_id: str
) -> None:
    # One PATCH is one transaction: the name must not change when the state change fails.
    before = await Snapshot.take(api)
    resp = await api.patch(f"/tasks/{task_id}", {"name": "renamed", "state": "running"})
    assert_eve_error(resp, 409)
    await before.check()


async def test_waiting_task_cannot_be_made_available(api: Api) -> None:
    child = await api.submit(command="child")
    await api.submit(command="parent", continuations=[child])
    before = await Snapshot.take(api)
    assert_eve_error(await api.patch(f"/tasks/{child}", {"state": "available"}), 409)
    await before.check()


async def test_cycle_in_one_bulk_post_is_422(api: Api, task_id: str) -> None:
    a, b, c = "a" * 24, "b" * 24, "c" * 24
    before = await Snapshot.take(api)
    body = [
        {"_id": a, "command": "a", "continuations": [b]},
        {"_id": b, "command": "b", "continuations": [c]},
        {"_id": c, "command": "c", "continuations": [a]},
    ]
    issues = assert_eve_error(await api.post("/tasks", body), 422)
    assert any(key.endswith("continuations") for key in issues), issues
    await before.check()


async def test_self_continuation_is_422(api: Api, task_id: str) -> None:
    a = "a" * 24
    before = await Snapshot.take(api)
    body = [{"_id": a, "command": "a", "continuations": [a]}]
    assert_eve_error(await api.post("/tasks", body), 422)
    await before.check()


async def test_cycle_by_patch_is_422(api: Api) -> None:
    child = await api.submit(command="child")
    parent = await api.submit(command="parent", continuations=[child])
    before = await Snapshot.take(api)
    resp = await api.patch(f"/tasks/{child}", {"add_continuations": [parent]})
    issues = assert_eve_error(resp, 422)
    assert "add_continuations" in issues, issues
    await before.check()


async def test_self_continuation_by_patch_is_422(api: Api, task_id: str) -> None:
    before = await Snapshot.take(api)
    assert_eve_error(await api.patch(f"/tasks/{task_id}", {"add_continuations": [task_id]}), 422)
    await before.check()


async def test_cycle_by_add_continuations_is_422(api: Api) -> None:
    a = await api.submit(command="a")
    b = await api.submit(command="b", continuations=[a])
    c = await api.submit(command="c", continuations=[b])
    before = await Snapshot.take(api)
    resp = await api.post("/tasks/add_continuations", [{"targets": [a], "values": [c]}])
    issues = assert_eve_error(resp, 422)
    assert "0.values" in issues, issues
    await before.check()


async def test_if_match_mismatch_is_412(api: Api, task_id: str) -> None:
    before = await Snapshot.take(api)
    resp = await api.patch(
        f"/tasks/{task_id}", {"priority": 5}, headers={"If-Match": '"not-the-etag"'}
    )
    assert_eve_error(resp, 412)
    await before.check()


async def test_if_match_with_the_current_etag_succeeds(api: Api, task_id: str) -> None:
    etag = (await api.task(task_id))["_etag"]
    resp = await api.patch(f"/tasks/{task_id}", {"priority": 5}, headers={"If-Match": f'"{etag}"'})
    assert resp.status == 200, resp
    assert resp.body["priority"] == 5


async def test_bulk_patch_with_a_stale_etag_reports_412_for_that_item(
    api: Api, task_id: str
) -> None:
    before = await Snapshot.take(api)
    resp = await api.patch("/tasks", [{"_id": task_id, "_etag": "stale", "priority": 5}])
    assert resp.body["_status"] == "ERR", resp
    (item,) = resp.body["_items"]
    assert item["_id"] == task_id
    assert item["_error"]["code"] == 412, resp
    await before.check()


# --- query parameters --------------------------------------------------------------------------

BAD_QUERIES = [
    pytest.param({"where": "not json"}, id="where-not-json"),
    pytest.param({"where": '{"name": '}, id="where-truncated"),
    pytest.param({"where": "[1, 2]"}, id="where-a-list"),
    pytest.param({"where": '"name"'}, id="where-a-string"),
    pytest.param({"where": '{"$where": "this.priority > 1"}'}, id="where-$where"),
    pytest.param({"where": '{"name": {"$regex": ".*"}}'}, id="where-$regex"),
    pytest.param({"where": '{"$or": [{"name": {"$regex": "a"}}]}'}, id="where-nested-$regex"),
    pytest.param({"where": '{"colour": "red"}'}, id="where-unknown-field"),
    pytest.param({"where": '{"priority": "high"}'}, id="where-wrong-type"),
    pytest.param({"where": '{"priority": {"$lt": "ten"}}'}, id="where-wrong-operand-type"),
    pytest.param({"where": '{"priority": {"$foo": 1}}'}, id="where-unknown-operator"),
    pytest.param({"where": '{"priority": 1, "priority": 2}'}, id="where-duplicate-key"),
    pytest.param({"where": '{"priority": NaN}'}, id="where-nan"),
    pytest.param({"where": '{"_id": "xyz"}'}, id="where-bad-id"),
    pytest.param({"sort": "colour"}, id="sort-unknown-field"),
    pytest.param({"sort": "-colour"}, id="sort-unknown-field-desc"),
    pytest.param({"sort": '[("colour", 1)]'}, id="sort-literal-unknown"),
    pytest.param({"sort": '[("priority", 2)]'}, id="sort-bad-direction"),
    pytest.param({"sort": "[(__import__('os').system('true'), 1)]"}, id="sort-code"),
    pytest.param({"sort": "priority,priority"}, id="sort-twice"),
    pytest.param({"projection": '{"name": 1, "command": 0}'}, id="projection-mixed"),
    pytest.param({"projection": '{"colour": 1}'}, id="projection-unknown-field"),
    pytest.param({"projection": '{"name": 2}'}, id="projection-bad-value"),
    pytest.param({"projection": "name"}, id="projection-not-json"),
    pytest.param({"max_results": "abc"}, id="max_results-abc"),
    pytest.param({"max_results": "1.5"}, id="max_results-float"),
    pytest.param({"page": "0"}, id="page-0"),
    pytest.param({"page": "-1"}, id="page-negative"),
    pytest.param({"page": "two"}, id="page-word"),
    pytest.param({"page": "9" * 40}, id="page-huge"),
]


@pytest.mark.parametrize("params", BAD_QUERIES)
async def test_bad_query_on_tasks_is_400(api: Api, task_id: str, params: dict[str, str]) -> None:
    assert_eve_error(await api.get("/tasks", params=params), 400)


@pytest.mark.parametrize(
    "params",
    [
        {"where": '{"colour": 1}'},
        {"where": '{"task": {"$regex": "a"}}'},
        {"sort": "colour"},
        {"projection": '{"task": 1, "time": 0}'},
        {"page": "0"},
    ],
)
async def test_bad_query_on_memory_usage_is_400(api: Api, params: dict[str, str]) -> None:
    assert_eve_error(await api.get("/memory_usage", params=params), 400)


@pytest.mark.parametrize(
    "params",
    [{"projection": '{"name": 1, "command": 0}'}, {"projection": '{"colour": 1}'}],
)
async def test_bad_projection_on_one_task_is_400(
    api: Api, task_id: str, params: dict[str, str]
) -> None:
    assert_eve_error(await api.get(f"/tasks/{task_id}", params=params), 400)


async def test_query_parameter_given_twice_is_400(api: Api) -> None:
    resp = await api.request("GET", "/tasks?where=%7B%7D&where=%7B%7D")
    assert_eve_error(resp, 400)


async def test_max_results_is_clamped_to_the_limit(api: Api, task_id: str) -> None:
    resp = await api.get("/tasks", params={"max_results": "5000"})
    assert resp.status == 200, resp
    assert resp.body["_meta"]["max_results"] == 1000


async def test_max_results_below_one_is_clamped_to_one(api: Api, task_id: str) -> None:
    resp = await api.get("/tasks", params={"max_results": "0"})
    assert resp.status == 200, resp
    assert resp.body["_meta"]["max_results"] == 1


# --- deep nesting and other hostile values ------------------------------------------------------

DEPTH = 10_000


@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [
        pytest.param("POST", "/tasks", "[" * DEPTH + "]" * DEPTH, id="post-lists"),
        pytest.param(
            "POST", "/tasks", '{"command": "x", "name": ' + "[" * DEPTH + "]" * DEPTH + "}",
            id="post-value",
        ),
        pytest.param(
            "POST", "/tasks", '{"requested_resources": ' + '{"a": ' * DEPTH + "1" + "}" * DEPTH
            + "}", id="post-resources",
        ),
        pytest.param(
            "PATCH", "/tasks/{id}", '{"requested_resources": ' + '{"a": ' * DEPTH + "1"
            + "}" * DEPTH + "}", id="patch-resources",
        ),
        pytest.param("PATCH", "/tasks", "[" * DEPTH + "]" * DEPTH, id="bulk-patch-lists"),
        pytest.param("POST", "/memory_usage", '{"task": ' + "[" * DEPTH + "]" * DEPTH + "}",
                     id="memory-usage"),
        pytest.param("POST", "/tasks/add_continuations", "[" * DEPTH + "]" * DEPTH, id="edits"),
    ],
)  # fmt: skip
async def test_deep_nesting_in_a_body_is_refused(
    api: Api, task_id: str, method: str, path: str, raw: str
) -> None:
    before = await Snapshot.take(api)
    resp = await api.request(method, path.format(id=task_id), raw=raw)
    assert resp.status in (400, 422), resp
    assert_eve_error(resp, resp.status)
    await before.check()


# Query strings must fit aiohttp's 8 KiB request line once percent-encoded, so
# these go only as deep as needed: past json's recursion limit (~1000) for the
# decoders, past where's own depth limit (8) and past Python's parser limit for sort.
QUERY_DEPTH = 1100


@pytest.mark.parametrize(
    "params",
    [
        {"where": '{"$and": [' * 20 + '{"name": "x"}' + "]}" * 20},
        {"where": '{"$or": [' * 20 + '{"name": "x"}' + "]}" * 20},
        {"where": "[" * QUERY_DEPTH + "]" * QUERY_DEPTH},
        {"projection": "[" * QUERY_DEPTH + "]" * QUERY_DEPTH},
        {"sort": "[" * 2000},
        {"sort": "(" * 300 + ")" * 300},
        {"sort": "[" * 300 + "]" * 300},
    ],
    ids=[
        "where-and", "where-or", "where-lists", "projection-lists", "sort-unclosed",
        "sort-parens", "sort-lists",
    ],
)  # fmt: skip
async def test_deep_nesting_in_a_query_is_400(api: Api, params: dict[str, str]) -> None:
    assert_eve_error(await api.get("/tasks", params=params), 400)


# Values JSON can spell but nothing can store: lone surrogates (SQLite refuses
# them), infinities and integers far past 64 bits. Whether the parser calls them
# malformed (400) or the validator calls them invalid (422), they must not crash.
@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('{"command": "x", "name": "\\ud800"}', id="lone-surrogate-name"),
        pytest.param('{"command": "\\udfff"}', id="lone-surrogate-command"),
        pytest.param('{"command": "x", "env": {"\\ud800": "v"}}', id="lone-surrogate-env"),
        pytest.param('{"command": "x", "requested_resources": {"\\ud800": 1}}',
                     id="surrogate-resource"),
        pytest.param('{"command": "x", "env": {"A=B": "v"}}', id="env-name-with-equals"),
        pytest.param('{"command": "x", "priority": 1e999}', id="priority-infinity"),
        pytest.param('{"command": "x", "requested_resources": {"cores": 1e999}}',
                     id="cores-infinity"),
        pytest.param('{"command": "x", "max_termination_time": 1e999}', id="duration-infinity"),
        pytest.param('{"command": "x", "priority": ' + "9" * 5000 + "}", id="huge-integer"),
        pytest.param('{"command": "x", "requested_resources": {"memory": ' + "9" * 5000 + "}}",
                     id="huge-memory"),
        pytest.param('{"command": "x", "command": 5}', id="repeated-key"),
        pytest.param('{"command": "x", "name": "a\\u0000b", "colour": 1}', id="nul-in-string"),
    ],
)  # fmt: skip
async def test_hostile_values_never_cause_a_500(api: Api, task_id: str, raw: str) -> None:
    before = await Snapshot.take(api)
    resp = await api.request("POST", "/tasks", raw=raw)
    assert resp.status in (400, 422), resp
    assert_eve_error(resp, resp.status)
    await before.check()


@pytest.mark.parametrize(
    "raw",
    [
        '{"task": "0123456789abcdef01234567", "time": "yesterday", "resident_memory_bytes": 1}',
        '{"task": "0123456789abcdef01234567", "time": 1, "resident_memory_bytes": -1}',
        '{"task": "0123456789abcdef01234567", "time": 1, "resident_memory_bytes": "1 GiB"}',
        '{"task": "0123456789abcdef01234567", "time": {}, "resident_memory_bytes": 1}',
        '{"task": "nope", "time": 1, "resident_memory_bytes": 1}',
        '{"time": 1, "resident_memory_bytes": 1}',
    ],
    ids=["time-word", "negative-bytes", "bytes-string", "time-object", "bad-task", "no-task"],
)
async def test_bad_memory_usage_record_is_422(api: Api, running_id: str, raw: str) -> None:
    resp = await api.request("POST", "/memory_usage", raw=raw, as_="worker")
    assert_eve_error(resp, 422)
    samples = await api.get("/memory_usage")
    assert samples.body["_meta"]["total"] == 0, samples


async def test_memory_usage_for_an_unknown_task_is_404(api: Api) -> None:
    body = {"task": UNKNOWN_ID, "time": 1, "resident_memory_bytes": 1}
    assert_eve_error(await api.post("/memory_usage", body), 404)


# --- routes and methods ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("GET", "/tasks/0123456789abcdef01234567/nope"),
        ("POST", "/tasks/0123456789abcdef01234567/history/x"),
        ("GET", "/home"),  # "/" is the home (its links), not unknown
        ("GET", "/%2e%2e/etc/passwd"),
    ],
)
async def test_unknown_route_is_404_in_eve_shape(api: Api, method: str, path: str) -> None:
    assert_eve_error(await api.request(method, path), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/tasks"),
        ("PUT", "/tasks"),
        ("DELETE", "/tasks/{id}"),
        ("PUT", "/tasks/{id}"),
        ("POST", "/tasks/{id}"),
        ("POST", "/health"),
        ("DELETE", "/memory_usage"),
    ],
)
async def test_wrong_method_is_405_in_eve_shape(
    api: Api, task_id: str, method: str, path: str
) -> None:
    before = await Snapshot.take(api)
    resp = await api.request(method, path.format(id=task_id))
    assert_eve_error(resp, 405)
    assert "Allow" in resp.headers, resp.headers
    await before.check()


async def test_overlong_url_is_a_client_error_not_a_crash(api: Api) -> None:
    # Refused by aiohttp's HTTP parser before any view runs: it cannot be Eve's
    # shape there, but it must still be a 4xx without a traceback.
    resp = await api.get("/tasks", params={"where": '{"name": "' + "n" * 20_000 + '"}'})
    assert 400 <= resp.status < 500, resp
    assert "Traceback" not in json.dumps(resp.body), resp


# Found by `make fuzz` (schemathesis, worker token): a sample with a time no date can
# show (1e20 s, far before year 1) was stored, and from then on every GET /memory_usage
# was a 500 when rendering it. Such times are 422 and nothing is stored.
@pytest.mark.parametrize("time", [1e20, -1e20, 253402300800, -62135596801, "1e400"])
async def test_memory_usage_time_out_of_the_calendar_is_422(
    api: Api, running_id: str, time: Any
) -> None:
    raw = json.dumps({"task": running_id, "resident_memory_bytes": 1}).replace(
        "}", f', "time": {time}}}'
    )
    issues = assert_eve_error(
        await api.request("POST", "/memory_usage", raw=raw, as_="worker"), 422
    )
    assert "time" in issues, issues
    samples = await api.get("/memory_usage")
    assert samples.status == 200 and samples.body["_meta"]["total"] == 0, samples


async def test_memory_usage_time_at_the_calendar_edges_is_stored(api: Api, running_id: str) -> None:
    for time in (253402300799, -62135596800, 0):
        body = {"task": running_id, "time": time, "resident_memory_bytes": 1}
        assert (await api.post("/memory_usage", body, as_="worker")).status == 201
    samples = await api.get("/memory_usage", params={"sort": "time"})
    assert samples.status == 200, samples
    times = [s["time"] for s in samples.body["_items"]]
    assert times[0].endswith(" Jan 1 00:00:00 GMT") or times[0].endswith(" Jan 0001 00:00:00 GMT")
    assert times[1:] == ["Thu, 01 Jan 1970 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT"]


async def test_a_negative_memory_request_is_422_must_be_at_least_zero(api: Api) -> None:
    body = {"command": "x", "requested_resources": {"memory": "-1 GiB"}}
    issues = assert_eve_error(await api.post("/tasks", body), 422)
    assert "must be ≥ 0" in issues["requested_resources.memory"], issues
