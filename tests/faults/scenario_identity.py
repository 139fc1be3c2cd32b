"""Workers that share an identity (issue 11): real ``banyan-worker``
processes started from ONE worker token, as cloned hosts or ``--name %H``
do; and a second token trying to take over a live worker with the host and
pid that ``GET /workers`` shows.

``same-name``: ``clones`` workers start at once with the same token (half of
them with ``--name`` set to the token's name, half without), then one more
while the tasks run. Exactly one may connect; every other exits 75 (close
code 4409). Each task must run once, with no concurrent duplicate (the
issue measured 8 tasks with ``max_retry_count`` 3 as 32 executions, 8 of
them concurrent duplicates).

``stolen-identity``: while a worker runs its tasks, a provider's worker token
and the admin token each connect as that worker with its public host and
pid. Both are refused (4403, 4409); its tasks keep running and none is
started anywhere else.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from banyan.tokens import basic_auth_header
from testbed import Proc
from testbed.cluster import WORKER
from testbed.procs import clean_env, launch
from tests.faults.harness import Api, Scene, wait_true, wait_until
from tests.faults.history import FaultResult, check

EXIT_ALREADY_CONNECTED = 75
TOKEN_NAME = "clone"


def run_same_name(workdir: Path, tasks: int = 8, *, clones: int = 2) -> FaultResult:
    return asyncio.run(_same_name(workdir, tasks, clones))


def run_stolen_identity(workdir: Path, tasks: int = 4) -> FaultResult:
    return asyncio.run(_stolen(workdir, tasks))


def start_worker(scene: Scene, key: str, token: str, *, name: str | None) -> Proc:
    """``banyan-worker --server URL --token TOKEN [--name NAME]`` as ``key``."""
    cluster = scene.cluster
    argv = [str(WORKER), "--server", cluster.url, "--token", token, "--cores", "2"]
    argv += ["--memory", "4 GiB"] + (["--name", name] if name is not None else [])
    proc = launch(
        argv, log=scene.dir / f"worker-{key}.log", env=clean_env(), cwd=scene.dir, name=key
    )
    cluster.workers[key] = proc
    return proc


async def _same_name(workdir: Path, n: int, clones: int) -> FaultResult:
    scene = Scene(workdir, "same-name")
    cluster = scene.cluster
    await asyncio.to_thread(cluster.start_server)
    token = await asyncio.to_thread(cluster.server.create_token, "worker", TOKEN_NAME)
    api = Api(cluster.url, cluster.token)
    try:
        procs = [
            start_worker(scene, f"c{i}", token, name=TOKEN_NAME if i % 2 else None)
            for i in range(clones)
        ]

        def settled() -> bool:
            return sum(p.popen.poll() is None for p in procs) <= 1

        await wait_true(settled, 60, "all clones but one to exit")
        await wait_until(lambda: _connected(api, TOKEN_NAME), 30, "the survivor to connect")
        batch = [scene.task("sleep 1", cores=0.25, max_retry_count=3) for _ in range(n)]
        await api.submit_all(scene.history, batch)
        await wait_until(lambda: _running(api), 30, "a task to run")
        late = start_worker(scene, "late", token, name=None)  # one more clone, mid-run
        procs.append(late)
        await asyncio.to_thread(late.popen.wait, 60)
        refused = [p for p in procs if p.popen.poll() == EXIT_ALREADY_CONNECTED]
        await scene.finish(api, timeout_s=60 + n)
        result = check("same-name workers", scene.history)
        result.faults_injected = len(procs) - 1
        result.details["refused_75"] = len(refused)
        result.details["other_exits"] = sorted(
            p.popen.returncode for p in procs if p not in refused and p.popen.returncode
        )
        result.details["executions"] = len(scene.history.executions)
        result.details["refusal_lines"] = [_refusal_line(p) for p in refused[:2]]
        result.wall_s = time.monotonic() - scene.started
        return result
    finally:
        await api.close()
        await asyncio.to_thread(scene.close)


async def _stolen(workdir: Path, n: int) -> FaultResult:
    scene = Scene(workdir, "stolen-identity")
    cluster = scene.cluster
    await asyncio.to_thread(cluster.start_server)
    token = await asyncio.to_thread(cluster.server.create_token, "worker", "victim")
    mallory_token = await asyncio.to_thread(cluster.server.create_token, "provider", "mallory")
    api = Api(cluster.url, cluster.token)
    try:
        start_worker(scene, "victim", token, name=None)
        await wait_until(lambda: _connected(api, "victim"), 30, "the victim to connect")
        batch = [scene.task("sleep 3", cores=0.25, max_retry_count=3) for _ in range(n)]
        await api.submit_all(scene.history, batch)
        busy = min(n, 8)  # 0.25 cores each on 2 cores
        await wait_until(lambda: _running(api, busy), 30, "the victim to be busy")
        shown = await api.ok("GET", "/workers/victim")
        frame = {
            "type": "hello",
            "name": "victim",
            "capacity": {"cores": 64},
            "host": shown["host"],
            "pid": shown["pid"],
        }
        mallory = Api(cluster.url, mallory_token)  # any provider may register workers
        try:
            registered = await mallory.ok("POST", "/workers", {"name": "thief"})
        finally:
            await mallory.close()
        codes = [
            await _try_hello(api, registered["token"], frame),
            await _try_hello(api, cluster.token, frame),
        ]
        await scene.finish(api, timeout_s=60 + n)
        result = check("stolen identity", scene.history)
        result.faults_injected = len(codes)
        result.details["close_codes"] = codes
        result.details["executions"] = len(scene.history.executions)
        result.details["attempts"] = len(scene.history.attempts)
        result.wall_s = time.monotonic() - scene.started
        return result
    finally:
        await api.close()
        await asyncio.to_thread(scene.close)


async def _connected(api: Api, name: str) -> bool:
    status, body = await api.call("GET", f"/workers/{name}")
    return status == 200 and body["state"] in ("idle", "busy")


async def _running(api: Api, at_least: int = 1) -> bool:
    return await api.count({"state": "running"}) >= at_least


async def _try_hello(api: Api, token: str, frame: dict[str, Any]) -> int | None:
    """Connect to the gateway with ``token`` and ``frame`` as the hello; the
    close code it gets (None: it was welcomed)."""
    headers = {"Authorization": basic_auth_header(token)}
    url = api.ws_url + "/workers/connect"
    async with aiohttp.ClientSession() as session, session.ws_connect(url, headers=headers) as ws:
        await ws.send_str(json.dumps(frame))
        msg = await ws.receive(timeout=10)
        return int(msg.data) if msg.type == aiohttp.WSMsgType.CLOSE else None


def _refusal_line(proc: Proc) -> str:
    lines = [line for line in proc.log_text().splitlines() if "refused this worker" in line]
    return lines[0] if lines else ""
