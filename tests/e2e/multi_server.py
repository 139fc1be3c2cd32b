"""Two real ``banyan-server`` processes on one PostgreSQL database, their
workers (real ``banyan-worker`` processes) and feed subscribers, for the
multi-server tests (issue 14). The database is read directly only to check
what the servers did (every attempt with its times)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from banyan.client import Client
from banyan.client.discovery import Connection
from banyan.states import CANCELLED_STATUS
from server.domain.transitions import RETURNED
from testbed import Server
from testbed.cluster import FAST, WORKER
from testbed.http import Http
from testbed.procs import Proc, clean_env, launch, stop_all


@dataclass
class Subscriber:
    """A feed subscriber on one server: every event frame, as received."""

    server: Server
    frames: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        connection = Connection(server=self.server.url, token=self.server.token)
        async with Client(connection, timeout_s=10) as client:
            async for frame in client.events(since=0, reconnect=False):
                if "seq" in frame:
                    self.frames.append(frame)

    def seqs(self) -> list[int]:
        return [f["seq"] for f in self.frames]

    def saw(self, seq: int) -> bool:
        return bool(self.frames) and self.frames[-1]["seq"] >= seq

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


@dataclass
class Pair:
    """Servers ``a`` and ``b`` on the database ``url``, sharing a client file
    (so one local admin token serves both)."""

    tmp: Path
    url: str
    a: Server
    b: Server
    workers: dict[str, Proc] = field(default_factory=dict)
    subscribers: list[Subscriber] = field(default_factory=list)

    @property
    def servers(self) -> tuple[Server, Server]:
        return self.a, self.b

    def http(self, server: Server) -> Http:
        return Http(server.url, server.token)

    def start_worker(
        self, name: str, servers: Sequence[Server], *args: str, cores: float = 2
    ) -> Proc:
        """``banyan-worker`` named ``name`` on ``servers`` (one ``--server`` each)."""
        argv = [str(WORKER), "--name", name, "--cores", str(cores), "--memory", "4 GiB"]
        for server in servers:
            argv += ["--server", server.url]
        argv += ["--token", self.a.token, *args]
        env = clean_env(BANYAN_CONFIG=str(self.a.config))
        log = self.tmp / f"worker-{name}.log"
        proc = launch(argv, log=log, env=env, cwd=self.tmp, name=name)
        self.workers[name] = proc
        return proc

    def subscribe(self, server: Server) -> Subscriber:
        subscriber = Subscriber(server)
        subscriber.start()
        self.subscribers.append(subscriber)
        return subscriber

    async def query(self, sql: str, *args: Any) -> list[Any]:
        conn = await asyncpg.connect(self.url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def close(self) -> None:
        for subscriber in self.subscribers:
            await subscriber.stop()
        procs = list(self.workers.values())
        procs += [s.proc for s in self.servers if s.proc is not None]
        await asyncio.to_thread(stop_all, procs, grace_s=0)


@contextlib.asynccontextmanager
async def two_servers(tmp: Path, url: str, **settings: object) -> AsyncIterator[Pair]:
    """Servers ``a`` and ``b`` started on ``url`` with ``FAST`` liveness (and ``settings``)."""
    merged = {**FAST, **settings}
    a = Server(tmp, name="a", settings=merged, db_url=url)
    b = Server(tmp, name="b", settings=merged, db_url=url)
    b.client_file = a.client_file
    pair = Pair(tmp, url, a, b)
    try:
        await asyncio.to_thread(a.start)
        await asyncio.to_thread(b.start)
        yield pair
    finally:
        await pair.close()


async def wait_until(condition: Any, timeout_s: float, what: str) -> None:
    """Poll ``condition`` (sync or async) until it is truthy; AssertionError after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        assert loop.time() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        await asyncio.sleep(0.05)


Run = tuple[int, str, float, float | None, str | None]


async def runs(pair: Pair) -> dict[str, list[Run]]:
    """Every attempt that may have started a process, by task: (attempt,
    worker, started, terminated, exit status). A prefetched attempt handed
    back, cancelled or abandoned before it started ran nothing and is left
    out; one still marked queued that ended otherwise is counted, from its
    claim (a conservative start)."""
    rows = await pair.query(
        "SELECT task_id, attempt, worker, time_started, time_terminated, exit_status "
        "FROM attempts WHERE NOT queued OR exit_status <> ALL($1::text[]) "
        "ORDER BY task_id, attempt",
        [RETURNED, CANCELLED_STATUS],
    )
    out: dict[str, list[Run]] = {}
    for task, number, worker, started, ended, status in rows:
        out.setdefault(task, []).append((number, worker, started, ended, status))
    return out


def overlapping(task_runs: Sequence[Run]) -> bool:
    """Whether two attempts of one task ran at the same time."""
    spans = sorted((run[2], run[3] if run[3] is not None else float("inf")) for run in task_runs)
    ended = float("-inf")
    for started, terminated in spans:
        if started < ended:
            return True
        ended = max(ended, terminated)
    return False
