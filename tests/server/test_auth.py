"""Who may do what (SPEC §5, "Auth"): every endpoint against every kind of
credential, both header forms, revocation, and the token commands of
``banyan-server``. Tokens are secrets: no response may ever carry one, nor its
SHA-256.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from banyan.resources import Resources
from banyan.tokens import Role, hash_token
from server.app import create_app
from server.keys import STORE
from server.settings import Settings
from tests.conftest import Api, Response

BIG = Resources(cores=64, memory=2**40)


# --- the world every matrix cell starts from ---------------------------------------------------


@dataclass
class World:
    api: Api
    owned: str  # alice's inactive task: the one PATCHed and linked
    child: str  # alice's second inactive task: the continuation target
    running: str  # alice's task, claimed by the "worker" token (worker-1)
    revoked: str  # an admin token that has been revoked

    def secrets(self) -> list[str]:
        """Every token the server knows and each one's hash."""
        tokens = [*self.api.tokens.values(), self.revoked]
        return tokens + [hash_token(t) for t in tokens]


@pytest.fixture
async def world(api: Api) -> World:
    owned = await api.submit(as_="alice", name="owned", command="echo owned")
    child = await api.submit(as_="alice", name="child", command="echo child")
    running = await api.submit(as_="alice", name="running", command="sleep 9", state="available")
    store = api.client.app[STORE]
    claimed = await store.claim(
        worker="worker-1", token="worker-1", free=BIG, queues=["default"], limit=1
    )
    assert [c["task"] for c in claimed] == [running]
    revoked = await store.create_token("former-admin", Role.ADMIN)
    await store.revoke_token("former-admin")
    return World(api, owned, child, running, revoked)


# --- credentials -------------------------------------------------------------------------------


def basic(token: str) -> str:
    return "Basic " + base64.b64encode(f"{token}:".encode()).decode()


def bearer(token: str) -> str:
    return f"Bearer {token}"


# Each credential: how to build the Authorization header (None = send none).
Credential = Callable[[World], str | None]

BAD_CREDENTIALS: dict[str, Credential] = {
    "no-token": lambda w: None,
    "empty-header": lambda w: "",
    "basic-garbled": lambda w: "Basic !!!",
    "basic-empty-user": lambda w: basic(""),
    "basic-no-colon": lambda w: "Basic " + base64.b64encode(b"byn_nothing").decode(),
    "bearer-empty": lambda w: "Bearer",
    "bearer-blank": lambda w: "Bearer    ",
    "unknown-scheme": lambda w: f"Token {w.api.tokens['admin']}",
    "digest-scheme": lambda w: f'Digest username="{w.api.tokens["admin"]}"',
    "raw-token": lambda w: w.api.tokens["admin"],
    "unknown-token-basic": lambda w: basic("byn_" + "x" * 43),
    "unknown-token-bearer": lambda w: bearer("byn_" + "y" * 43),
    "overlong-token": lambda w: bearer("byn_" + "z" * 5000),
    "token-with-password": lambda w: (
        "Basic " + base64.b64encode(f"byn_{'q' * 43}:{w.api.tokens['admin']}".encode()).decode()
    ),
    "revoked-basic": lambda w: basic(w.revoked),
    "revoked-bearer": lambda w: bearer(w.revoked),
}

# Valid tokens, named by who they are relative to ``World.owned`` (alice's).
ROLES = {
    "worker": "worker",
    "not-owner": "bob",
    "owner": "alice",
    "admin": "admin",
}
SCHEMES = {"basic": basic, "bearer": bearer}


def role_credential(who: str, scheme: str) -> Credential:
    return lambda w: SCHEMES[scheme](w.api.tokens[ROLES[who]])


CREDENTIALS: dict[str, Credential] = dict(BAD_CREDENTIALS)
for _who in ROLES:
    for _scheme in SCHEMES:
        CREDENTIALS[f"{_who}-{_scheme}"] = role_credential(_who, _scheme)


# --- endpoints ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # {owned}, {child}, {running} are filled from the World
    body: Any = None
    # Who gets in: "none" (no token needed), "any" role, "providers"
    # (provider or admin), "owner" (the task's owner or admin), "workers".
    access: str = "any"
    ok: int = 200

    def fill(self, world: World) -> tuple[str, Any]:
        """The path and body with the World's task ids in place of the placeholders."""
        names = {"{owned}": world.owned, "{child}": world.child, "{running}": world.running}
        text = json.dumps([self.path, self.body])
        for placeholder, task_id in names.items():
            text = text.replace(placeholder, task_id)
        path, body = json.loads(text)
        return path, body


MEMORY_SAMPLE = {"task": "{running}", "time": 1_700_000_000, "resident_memory_bytes": 4096}

ENDPOINTS = {
    "POST /tasks": Endpoint("POST", "/tasks", {"command": "echo new"}, "providers", 201),
    "GET /tasks": Endpoint("GET", "/tasks"),
    "PATCH /tasks": Endpoint("PATCH", "/tasks", [{"_id": "{owned}", "priority": 7}], "owner"),
    "GET /tasks/{id}": Endpoint("GET", "/tasks/{owned}"),
    "PATCH /tasks/{id}": Endpoint("PATCH", "/tasks/{owned}", {"priority": 7}, "owner"),
    "GET /tasks/{id}/history": Endpoint("GET", "/tasks/{running}/history"),
    "POST /tasks/add_continuations": Endpoint(
        "POST", "/tasks/add_continuations", [{"targets": ["{owned}"], "values": ["{child}"]}],
        "owner",
    ),
    "POST /tasks/remove_continuations": Endpoint(
        "POST", "/tasks/remove_continuations", [{"targets": ["{owned}"], "values": ["{child}"]}],
        "owner",
    ),
    "POST /memory_usage": Endpoint("POST", "/memory_usage", MEMORY_SAMPLE, "workers", 201),
    "GET /memory_usage": Endpoint("GET", "/memory_usage"),
    "GET /openapi.json": Endpoint("GET", "/openapi.json"),
    "GET /health": Endpoint("GET", "/health", access="none"),
}  # fmt: skip

ALLOWED = {
    "any": {"worker", "not-owner", "owner", "admin"},
    "providers": {"not-owner", "owner", "admin"},
    "owner": {"owner", "admin"},
    "workers": {"worker", "admin"},
}


def expected(endpoint: Endpoint, credential: str) -> int | str:
    """The documented answer: a status, or "item-403" for a bulk PATCH refused per item."""
    who = credential.rsplit("-", 1)[0]
    if endpoint.access == "none":
        return endpoint.ok
    if credential in BAD_CREDENTIALS:
        return 401
    if who in ALLOWED[endpoint.access]:
        return endpoint.ok
    if endpoint.path == "/tasks" and endpoint.method == "PATCH" and who == "not-owner":
        return "item-403"  # a provider may bulk-PATCH; each item not its own is refused
    return 403


async def send(world: World, endpoint: Endpoint, header: str | None) -> tuple[Response, str]:
    """The response and its raw text (headers included), for the secrets check."""
    path, body = endpoint.fill(world)
    headers = {} if header is None else {"Authorization": header}
    data = None if body is None else json.dumps(body)
    if body is not None:
        headers["Content-Type"] = "application/json"
    async with world.api.client.request(endpoint.method, path, data=data, headers=headers) as resp:
        text = await resp.text()
        parsed = json.loads(text) if text else None
        shown = text + "\n" + "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
        return Response(resp.status, parsed, dict(resp.headers)), shown


def assert_no_secrets(text: str, world: World) -> None:
    for secret in world.secrets():
        assert secret not in text, f"a token or token hash leaked: {text[:300]}"


async def snapshot(world: World) -> list[dict[str, Any]]:
    resp = await world.api.get("/tasks", params={"max_results": "1000", "sort": "_id"})
    assert resp.status == 200, resp
    return list(resp.body["_items"])


# --- the matrix --------------------------------------------------------------------------------


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("name", ENDPOINTS)
async def test_auth_matrix(world: World, name: str, credential: str) -> None:
    endpoint = ENDPOINTS[name]
    want = expected(endpoint, credential)
    before = await snapshot(world)
    resp, text = await send(world, endpoint, CREDENTIALS[credential](world))
    assert_no_secrets(text, world)

    if want == "item-403":
        assert resp.status == 200, resp
        (item,) = resp.body["_items"]
        assert item["_error"]["code"] == 403, resp
    else:
        assert resp.status == want, resp
    if want == 200 and name == "PATCH /tasks":
        # A bulk PATCH answers 200 even when items fail; allowed means every item went through.
        assert resp.body["_status"] == "OK", resp
    if resp.status >= 400:
        assert resp.body["_status"] == "ERR", resp
        assert resp.body["_error"]["code"] == resp.status, resp
    if want == 401:
        assert resp.headers.get("WWW-Authenticate"), resp.headers
    if want in (401, 403, "item-403"):
        # Refused means refused: nothing was created or changed.
        assert await snapshot(world) == before


# --- around the matrix -------------------------------------------------------------------------


async def test_a_403_has_no_www_authenticate(world: World) -> None:
    # The caller is known; asking it to log in again would not help.
    resp = await world.api.post("/tasks", {"command": "x"}, as_="worker")
    assert resp.status == 403, resp
    assert "WWW-Authenticate" not in resp.headers


async def test_a_403_says_which_roles_in_english(world: World) -> None:
    resp = await world.api.post("/memory_usage", {}, as_="alice")
    assert resp.status == 403, resp
    message = resp.body["_error"]["message"]
    assert message == "this needs an admin or worker token; yours is a provider token"
    resp = await world.api.post("/tasks", {"command": "x"}, as_="worker")
    assert resp.body["_error"]["message"].startswith("this needs an admin or provider token")


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer", "basic", "BASIC"])
async def test_scheme_names_are_case_insensitive(world: World, scheme: str) -> None:
    token = world.api.tokens["alice"]
    value = token if scheme.lower() == "bearer" else base64.b64encode(f"{token}:".encode()).decode()
    resp, _ = await send(world, ENDPOINTS["GET /tasks"], f"{scheme} {value}")
    assert resp.status == 200, resp


@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [
        ("POST", "/tasks", '{"command": '),
        ("PATCH", "/tasks/{owned}", "[1,"),
        ("POST", "/memory_usage", "nul"),
        ("GET", "/tasks?where=not-json", None),
        ("GET", "/tasks/0123456789abcdef01234567", None),
        ("GET", "/tasks/not-an-id/history", None),
    ],
)
async def test_no_token_is_401_before_the_request_is_looked_at(
    world: World, method: str, path: str, raw: str | None
) -> None:
    # An anonymous caller learns nothing: not whether its JSON parses, nor whether a task exists.
    resp = await world.api.request(method, path.format(owned=world.owned), raw=raw, as_=None)
    assert resp.status == 401, resp
    assert "WWW-Authenticate" in resp.headers


@pytest.mark.parametrize(
    ("method", "path", "raw", "who"),
    [
        ("POST", "/tasks", '{"command": ', "worker"),
        ("PATCH", "/tasks/{owned}", "[1,", "worker"),
        ("POST", "/memory_usage", "nul", "alice"),
    ],
)
async def test_wrong_role_is_403_before_the_body_is_parsed(
    world: World, method: str, path: str, raw: str, who: str
) -> None:
    resp = await world.api.request(method, path.format(owned=world.owned), raw=raw, as_=who)
    assert resp.status == 403, resp


async def test_the_owner_field_is_the_token_name_never_the_token(world: World) -> None:
    task = await world.api.task(world.owned)
    assert task["owner"] == "alice"
    assert_no_secrets(json.dumps(task), world)


async def test_a_provider_may_read_other_providers_tasks(world: World) -> None:
    resp = await world.api.get(f"/tasks/{world.owned}", as_="bob")
    assert resp.status == 200, resp
    assert resp.body["owner"] == "alice"


async def test_a_provider_may_cancel_its_own_task_but_not_anothers(world: World) -> None:
    refused = await world.api.patch(f"/tasks/{world.owned}", {"state": "cancelled"}, as_="bob")
    assert refused.status == 403, refused
    assert (await world.api.task(world.owned))["state"] == "inactive"
    done = await world.api.patch(f"/tasks/{world.owned}", {"state": "cancelled"}, as_="alice")
    assert done.status == 200, done
    assert done.body["state"] == "cancelled"


async def test_a_provider_may_not_link_its_task_to_anothers(world: World) -> None:
    # Both ends of a continuation must be the caller's own tasks.
    bobs = await world.api.submit(as_="bob", command="echo bob")
    before = await snapshot(world)
    resp = await world.api.post(
        "/tasks/add_continuations", [{"targets": [bobs], "values": [world.child]}], as_="bob"
    )
    assert resp.status == 403, resp
    assert await snapshot(world) == before


async def test_a_provider_may_not_make_anothers_task_wait_on_a_new_one(world: World) -> None:
    before = await snapshot(world)
    resp = await world.api.post(
        "/tasks", {"command": "x", "continuations": [world.owned]}, as_="bob"
    )
    assert resp.status == 403, resp
    assert await snapshot(world) == before


async def test_a_worker_posts_memory_usage_only_for_attempts_it_holds(world: World) -> None:
    store = world.api.client.app[STORE]
    world.api.tokens["worker-2"] = await store.create_token("worker-2", Role.WORKER)
    body = {"task": world.running, "time": 1_700_000_000, "resident_memory_bytes": 1}
    resp = await world.api.post("/memory_usage", body, as_="worker-2")
    assert resp.status == 403, resp
    # Nor for a task that is not running at all.
    body["task"] = world.owned
    resp = await world.api.post("/memory_usage", body, as_="worker")
    assert resp.status == 403, resp
    samples = await world.api.get("/memory_usage")
    assert samples.body["_meta"]["total"] == 0, samples


async def test_a_token_revoked_while_the_server_runs_stops_working(world: World) -> None:
    # The test settings use token_cache_s=0, so the next request looks it up again.
    store = world.api.client.app[STORE]
    world.api.tokens["dave"] = await store.create_token("dave", Role.PROVIDER)
    assert (await world.api.get("/tasks", as_="dave")).status == 200
    await store.revoke_token("dave")
    resp = await world.api.get("/tasks", as_="dave")
    assert resp.status == 401, resp
    assert "WWW-Authenticate" in resp.headers


async def test_no_error_message_echoes_the_token_it_refused(world: World) -> None:
    attempt = "byn_" + "s" * 43
    for header in (basic(attempt), bearer(attempt), f"Token {attempt}", attempt):
        resp, text = await send(world, ENDPOINTS["GET /tasks"], header)
        assert resp.status == 401, resp
        assert attempt not in text
        assert hash_token(attempt) not in text


@pytest.mark.parametrize("path", ["/openapi.json", "/health", "/tasks", "/memory_usage"])
async def test_documents_carry_no_secrets(world: World, path: str) -> None:
    resp, text = await send(world, Endpoint("GET", path), basic(world.api.tokens["admin"]))
    assert resp.status == 200, resp
    assert_no_secrets(text, world)


# --- the token commands ------------------------------------------------------------------------

BANYAN_SERVER = Path(sys.executable).parent / "banyan-server"


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """An environment with no BANYAN_* settings and private user dirs, so no real
    config file or database of the machine running the tests is touched."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANYAN_")}
    home = tmp_path / "home"
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
    )
    return env


@dataclass
class Cli:
    db: Path
    env: dict[str, str]

    def run(self, *args: str, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
        # server/cli.py has no ``if __name__ == "__main__"``, so ``python -m server.cli``
        # would do nothing: run the installed console script instead.
        return subprocess.run(
            [str(BANYAN_SERVER), "token", *args, "--db", str(self.db)],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout_s,
            check=False,
        )

    async def arun(self, *args: str) -> subprocess.CompletedProcess[str]:
        # From async tests: keep the event loop (and the test server on it) running.
        return await asyncio.to_thread(self.run, *args)


@pytest.fixture
def cli(tmp_path: Path, cli_env: dict[str, str]) -> Cli:
    assert BANYAN_SERVER.exists(), f"no banyan-server script next to {sys.executable}"
    return Cli(tmp_path / "cli.db", cli_env)


def last_line(out: str) -> str:
    return out.rstrip("\n").splitlines()[-1]


def test_token_create_prints_the_token_alone_on_the_last_line(cli: Cli) -> None:
    done = cli.run("create", "--role", "provider", "--name", "carol")
    assert done.returncode == 0, done.stderr
    token = last_line(done.stdout)
    assert token == token.strip() and " " not in token
    assert token.startswith("byn_") and len(token) >= 32


def test_token_list_shows_name_and_role_but_never_the_token(cli: Cli) -> None:
    token = last_line(cli.run("create", "--role", "provider", "--name", "carol").stdout)
    done = cli.run("list")
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if "carol" in line]
    assert "provider" in line
    assert "active" in line
    assert token not in done.stdout + done.stderr
    assert hash_token(token) not in done.stdout + done.stderr


def test_token_list_starts_with_a_header_row(cli: Cli) -> None:
    cli.run("create", "--role", "provider", "--name", "carol")
    rows = [line.split("\t") for line in cli.run("list").stdout.splitlines()]
    assert rows[0] == ["NAME", "ROLE", "CREATED (UTC)", "STATUS"]
    assert [row[0] for row in rows[1:]] == ["carol"] and len(rows[1]) == len(rows[0])


def test_token_revoke_marks_the_token_revoked(cli: Cli) -> None:
    cli.run("create", "--role", "provider", "--name", "carol")
    done = cli.run("revoke", "carol")
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in cli.run("list").stdout.splitlines() if "carol" in line]
    assert "revoked" in line


def test_token_create_with_an_active_name_fails_clearly(cli: Cli) -> None:
    first = cli.run("create", "--role", "provider", "--name", "carol")
    assert first.returncode == 0, first.stderr
    second = cli.run("create", "--role", "admin", "--name", "carol")
    assert second.returncode != 0
    assert "carol" in second.stderr and "already exists" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    assert not second.stdout.strip(), "no token may be printed for a refused create"
    # The first token is untouched: still a provider.
    (line,) = [line for line in cli.run("list").stdout.splitlines() if "carol" in line]
    assert "provider" in line and "active" in line


def test_a_revoked_name_is_never_given_a_new_token(cli: Cli) -> None:
    # Tasks and history name the revoked token: a new holder of the name
    # would inherit them (and its tasks would look like the old one's).
    cli.run("create", "--role", "provider", "--name", "carol")
    cli.run("revoke", "carol")
    again = cli.run("create", "--role", "worker", "--name", "carol")
    assert again.returncode != 0
    assert "carol" in again.stderr and "revoked" in again.stderr, again.stderr
    assert not again.stdout.strip()
    (line,) = [line for line in cli.run("list").stdout.splitlines() if "carol" in line]
    assert "provider" in line and "revoked" in line


def test_token_revoke_of_an_unknown_name_fails_clearly(cli: Cli) -> None:
    done = cli.run("revoke", "nobody")
    assert done.returncode != 0
    assert "nobody" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("role", ["root", ""])
def test_token_create_with_an_unknown_role_fails(cli: Cli, role: str) -> None:
    done = cli.run("create", "--role", role, "--name", "carol")
    assert done.returncode != 0
    assert "role" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_token_command_on_a_database_from_a_newer_banyan_fails_clearly(cli: Cli) -> None:
    # A database this version cannot read must give a message and an exit
    # status, not a traceback, and the command must not hang on its way out.
    with sqlite3.connect(cli.db) as conn:
        conn.execute("PRAGMA user_version = 10000")
    try:
        done = cli.run("list", timeout_s=15)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"banyan-server token list hung after failing: {exc.stderr!r:.300}")
    assert done.returncode != 0
    assert "newer" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


async def test_a_cli_token_works_against_a_server_on_that_db(
    cli: Cli, settings: Settings, aiohttp_client: Callable[..., Awaitable[TestClient]]
) -> None:
    created = await cli.arun("create", "--role", "provider", "--name", "carol")
    assert created.returncode == 0, created.stderr
    token = last_line(created.stdout)
    client = await aiohttp_client(create_app(settings.model_copy(update={"db": cli.db})))

    async def post(header: str) -> int:
        async with client.post(
            "/tasks", json={"command": "echo carol"}, headers={"Authorization": header}
        ) as resp:
            return resp.status

    assert await post(basic(token)) == 201
    assert await post(bearer(token)) == 201
    async with client.get("/tasks", headers={"Authorization": bearer(token)}) as resp:
        owners = {item["owner"] for item in (await resp.json())["_items"]}
    assert owners == {"carol"}

    # Revoked by the command line in another process, refused by the running server
    # at once (the test settings cache tokens for 0 s).
    revoked = await cli.arun("revoke", "carol")
    assert revoked.returncode == 0, revoked.stderr
    assert await post(bearer(token)) == 401
