"""schemathesis against the server's own ``/openapi.json`` (issue 6).

A real ``banyan-server`` process on a free loopback port with a fresh SQLite
file; every operation of the document is fuzzed with schema-valid and
schema-invalid requests (``mode: all``), once with a provider token and once
with a worker token. Every response must be documented: never a 5xx, a
documented status code and content type, a body matching the documented
schema for that status.

Random 24-hex ids would almost always be 404s, so before fuzzing the test
seeds tasks in every state it can reach without running anything (inactive,
available, a succeeded group, cancelled, a small tree, and two tasks
*running* under a claim the test makes itself over the worker websocket) and
points about three requests in four that name a task at one of them (the
running ones with their real ``execution_key``). No ``banyan-worker`` is
ever started: the fuzzer submits random shell commands as available tasks,
and nothing may run them.

``BANYAN_FUZZ_EXAMPLES`` (default 20; ``make fuzz`` sets 1000) is hypothesis'
``max_examples`` per operation; the seed is fixed and generation
derandomized, so a run is repeatable and ``make test`` cannot flake on it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from banyan.tokens import basic_auth_header
from testbed import Cluster, Http

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("BANYAN_FUZZ_EXAMPLES", "20"))
FULL = EXAMPLES >= 100  # `make fuzz`
SEED = 20261201
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
REGISTERED = "fuzz-worker"  # as the provider registers it; the token is named:
WORKER_NAME = f"fuzz-provider:{REGISTERED}"  # and so is the worker (issue 11)
SEED_QUEUE = "fuzz-seed"  # only the seeded running tasks are in it
HEX_ID = re.compile(r"^[0-9a-fA-F]{24}$")
# BANYAN_FUZZ_TALLY=path: write {"operation": {"status": count}} there at the end.
TALLY: dict[str, Counter[int]] = defaultdict(Counter)


@dataclass
class Seeds:
    """Tasks that exist before fuzzing, and the keys of the running ones."""

    ids: list[str]
    keys: dict[str, str] = field(default_factory=dict)  # running task -> execution_key

    def pick(self, value: str) -> str:
        """A seeded id for about three values in four, else ``value``: fixed per
        value, so a case replays the same way."""
        index = zlib.crc32(value.encode()) % (len(self.ids) + len(self.ids) // 3 + 1)
        return self.ids[index] if index < len(self.ids) else value


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path_factory.mktemp("fuzz"))
    try:
        # A claimed attempt stays running for the whole run without heartbeats.
        the_cluster.start_server(worker_timeout_s=3600)
        yield the_cluster
    finally:
        the_cluster.close()
        if tally := os.environ.get("BANYAN_FUZZ_TALLY"):
            Path(tally).write_text(json.dumps(TALLY, indent=1, sort_keys=True))


@pytest.fixture(scope="module")
def tokens(cluster: Cluster) -> dict[str, str]:
    provider = cluster.server.create_token("provider", "fuzz-provider")
    worker = Http(cluster.url, provider).ok("POST", "/workers", {"name": REGISTERED})["token"]
    return {"provider": provider, "worker": worker}


async def _claim(url: str, token: str, limit: int) -> dict[str, str]:
    """Claim ``limit`` tasks of the seed queue as the fuzz worker; leave them running."""
    headers = {"Authorization": basic_auth_header(token)}
    hello = {"type": "hello", "name": WORKER_NAME, "capacity": {"cores": 64}}
    claim = {"type": "claim", "free": {"cores": 64}, "limit": limit}
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url + "/workers/connect", headers=headers) as ws,
    ):
        await ws.send_str(json.dumps({**hello, "queues": [SEED_QUEUE]}))
        await ws.send_str(json.dumps(claim))
        while True:
            frame = json.loads((await ws.receive(timeout=30)).data)
            if frame["type"] == "assigned":
                return {a["task"]: a["execution_key"] for a in frame["attempts"]}


@pytest.fixture(scope="module")
def seeds(cluster: Cluster, tokens: dict[str, str]) -> Seeds:
    http = Http(cluster.url, tokens["provider"])
    run = {"command": "sleep 600", "queue": SEED_QUEUE, "state": "available"}
    ids = http.submit(
        [
            {"name": "fuzz inactive", "command": "true", "requested_resources": {"cores": 2}},
            {"name": "fuzz available", "command": "true", "state": "available"},
            {"name": "fuzz group", "state": "available"},  # succeeds at once
            {"name": "fuzz cancelled", "command": "true"},
            {"_id": "fa" * 12, "name": "fuzz root", "continuations": ["fb" * 12]},
            {"_id": "fb" * 12, "name": "fuzz child", "command": "true"},
            {**run, "name": "fuzz running 1"},
            {**run, "name": "fuzz running 2", "max_retry_count": 2},
        ]
    )
    http.ok("PATCH", f"/tasks/{ids[3]}", {"state": "cancelled"})
    keys = asyncio.run(_claim(cluster.url, tokens["worker"], limit=2))
    assert sorted(keys) == sorted(ids[6:]), keys
    assert http.task(ids[2])["state"] == "terminated"
    return Seeds(ids, keys)


def _crc(*values: Any) -> int:
    return zlib.crc32(repr(values).encode())


def retarget(case: Case, seeds: Seeds) -> None:
    """Point the ids a case names at seeded tasks (see the module docstring)."""
    params = case.path_parameters or {}
    if isinstance(params.get("task_id"), str) and HEX_ID.match(params["task_id"]):
        params["task_id"] = seeds.pick(params["task_id"])
        body = case.body
        if isinstance(body, dict) and params["task_id"] in seeds.keys and "execution_key" in body:
            body["execution_key"] = seeds.keys[params["task_id"]]
    if isinstance(params.get("name"), str) and zlib.crc32(params["name"].encode()) % 2:
        params["name"] = WORKER_NAME
    headers = case.headers or {}
    if "If-Match" in headers and _crc(headers["If-Match"], params, case.body) % 3:
        del headers["If-Match"]  # a random one is always a 412
    items = case.body if isinstance(case.body, list) else [case.body]
    for item in items:
        if not isinstance(item, dict):
            continue
        for key in ("task", "_id"):
            if isinstance(item.get(key), str) and HEX_ID.match(item[key]):
                item[key] = seeds.pick(item[key])
        for key in ("targets", "values", "continuations", "add_continuations"):
            if isinstance(item.get(key), list):
                item[key] = [
                    seeds.pick(v) if isinstance(v, str) and HEX_ID.match(v) else v
                    for v in item[key]
                ]


@pytest.fixture(params=["provider", "worker"])
def api_schema(
    request: pytest.FixtureRequest, cluster: Cluster, tokens: dict[str, str], seeds: Seeds
) -> Any:
    header = {"Authorization": basic_auth_header(tokens[request.param])}
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": header,
            "generation": {"mode": "all", "max-examples": EXAMPLES, "deterministic": True},
            # The coverage phase (boundary and missing values, about 1,600 requests
            # whatever max_examples is) runs for both tokens only in `make fuzz`:
            # a worker may do little, and `make test` has a time budget.
            # Reusing values from earlier responses (server-made ids, etags) is on only
            # there too, so that what `make test` sends does not depend on them.
            "phases": {
                "stateful": {"enabled": False},
                "coverage": {"enabled": request.param == "provider" or FULL},
                "fuzzing": {"extra-data-sources": {"responses": FULL}},
            },
        }
    )
    return schemathesis.openapi.from_url(
        cluster.url + "/openapi.json", config=config, headers=header, timeout=60
    )


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.timeout(7200)
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_response_is_documented(case: Case, seeds: Seeds) -> None:
    retarget(case, seeds)
    response = case.call_and_validate(checks=CHECKS, timeout=60)
    TALLY[case.operation.label][response.status_code] += 1
