"""What every fault scenario shares: a :class:`Scene` (a real ``banyan-server``
and ``banyan-worker`` processes from ``testbed.Cluster``, the marks
file and lock directory the tasks write to, the history being recorded), an
async JSON client that records instead of raising, raw event-feed
subscribers, and the end of a run (wait, stop the workers, look for orphans,
read what the server recorded).

A scene runs on SQLite (the server's file in the scene's directory) or, inside
:func:`on_postgres`, on a fresh database of a PostgreSQL cluster; what the
server recorded (attempts, event seqs) is read straight from whichever it is.

Tasks are real shell commands. Each one appends ``TASK ATTEMPT PID start T``
before its body and ``... end T`` after it succeeds; it first takes an
``flock`` on a file named after the task, and writes ``overlap`` if another
execution of the same task still holds it (a lock dies with the last process
holding it, so this is true also of executions that were killed). Each task
carries ``FAULT_MARKER`` in its environment, inherited by everything it
starts, which is how leftover processes are found.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import signal
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

from banyan.ids import new_id
from banyan.tokens import basic_auth_header
from testbed import FAST, Cluster, Proc, Server
from testbed.postgres import Postgres
from tests.e2e.helpers import processes_with_env
from tests.faults.history import (
    Execution,
    Feed,
    History,
    ServerAttempt,
    Submit,
    read_executions,
)

MARKER_ENV = "FAULT_MARKER"
FINISHED = ("terminated", "cancelled")

_postgres: list[Postgres] = []  # the cluster scenes are made on, inside on_postgres()


@contextlib.contextmanager
def on_postgres(cluster: Postgres) -> Iterator[None]:
    """Scenes made inside this block run on a fresh database of ``cluster``."""
    _postgres.append(cluster)
    try:
        yield
    finally:
        _postgres.pop()


def store_name() -> str:
    """The store scenes made now run on: ``sqlite`` or ``postgresql``."""
    return "postgresql" if _postgres else "sqlite"


def _new_cluster(workdir: Path) -> Cluster:
    if not _postgres:
        return Cluster(workdir)
    # Scenes are made inside running event loops: the database is made on a thread.
    with ThreadPoolExecutor(1) as pool:
        url = pool.submit(_postgres[-1].new_database_sync, "fault").result()
    return Cluster(workdir, server=Server(workdir, settings=FAST, db_url=url))


class Scene:
    def __init__(self, workdir: Path, fault: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.dir = workdir
        self.fault = fault
        self.marker = f"fault-{fault}-{uuid.uuid4().hex[:10]}"
        self.marks = workdir / "marks.log"
        self.locks = workdir / "locks"
        self.locks.mkdir(exist_ok=True)
        self.cluster = _new_cluster(workdir)
        self.history = History()
        self.started = time.monotonic()

    # --- tasks -------------------------------------------------------------------

    def command(self, body: str) -> str:
        marks = shlex.quote(str(self.marks))
        locks = shlex.quote(str(self.locks))
        tag = '"$BANYAN_TASK_ID $BANYAN_ATTEMPT $$'
        return (
            f': {self.marker}; exec 9>>{locks}/"$BANYAN_TASK_ID"; '
            f'flock -n 9 || echo {tag} overlap $(date +%s.%N)" >> {marks}; '
            f'echo {tag} start $(date +%s.%N)" >> {marks}; '
            f'{body} && echo {tag} end $(date +%s.%N)" >> {marks}'
        )

    def task(self, body: str, *, cores: float = 0.25, **fields: Any) -> dict[str, Any]:
        return {
            "_id": new_id(),
            "command": self.command(body),
            "env": {MARKER_ENV: self.marker},
            "state": "available",
            "requested_resources": {"cores": cores},
            **fields,
        }

    @property
    def database(self) -> Path | str:
        """The server's database: its SQLite file, or its PostgreSQL URL."""
        server = self.cluster.server
        return server.db_url if server.db_url is not None else server.db

    def executions(self) -> list[Execution]:
        return read_executions(self.marks)

    # --- the end -----------------------------------------------------------------

    async def finish(self, api: Api, *, timeout_s: float, feeds: Iterable[Subscriber] = ()) -> None:
        """Wait (bounded) until every acknowledged task has ended, stop the
        workers, look for leftover processes, and record what the server has."""
        acked = {t for s in self.history.submits if s.acked for t in s.ids}
        await wait_until(
            lambda: _all_finished(api, acked), timeout_s, "every acknowledged task to end"
        )
        await asyncio.to_thread(stop_workers, self.cluster.workers.values())
        self.history.orphans = await leftover(self.marker)
        await self.record(api, list(feeds))

    async def record(self, api: Api, feeds: list[Subscriber]) -> None:
        h = self.history
        h.executions = self.executions()
        h.attempts = server_attempts(self.database)
        tasks = await api.find_all({}, {"state": 1})
        h.present = {t["_id"] for t in tasks}
        h.final_states = {t["_id"]: t["state"] for t in tasks}
        if feeds:
            head = await feed_head(api)
            for sub in feeds:
                await wait_true(partial(_caught_up, sub, head), 60, "a subscriber to catch up")
                await sub.stop()
                h.feeds.append(sub.feed)
            h.reference_seqs = reference_seqs(self.database, min(s.feed.since for s in feeds), head)

    def close(self) -> None:
        self.cluster.close()


async def _all_finished(api: Api, ids: set[str]) -> bool:
    if not ids:
        return True
    waiting = await api.count({"state": {"$nin": list(FINISHED)}})
    return waiting == 0


def _caught_up(sub: Subscriber, head: int) -> bool:
    return sub.last >= head


def stop_workers(workers: Iterable[Proc], timeout_s: float = 30) -> None:
    """SIGTERM every live worker and wait for it (SIGKILL past ``timeout_s``)."""
    live = [w for w in workers if w.popen.poll() is None]
    for w in live:
        w.remember_descendants()
        with contextlib.suppress(ProcessLookupError):
            w.popen.send_signal(signal.SIGCONT)  # a stopped worker cannot act on SIGTERM
            w.popen.send_signal(signal.SIGTERM)
    for w in live:
        try:
            w.popen.wait(timeout=timeout_s)
        except Exception:
            w.popen.kill()
            w.popen.wait(timeout=10)


async def leftover(marker: str, grace_s: float = 10) -> list[int]:
    """Processes carrying the scenario's marker, after up to ``grace_s`` for them to go."""
    deadline = time.monotonic() + grace_s
    while True:
        found = await asyncio.to_thread(processes_with_env, MARKER_ENV, marker)
        if not found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


async def wait_true(
    condition: Callable[[], bool], timeout_s: float, what: str, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(interval)


def _query(db: Path | str, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (``?`` placeholders), read straight from the server's
    database: its SQLite file (read-only) or its PostgreSQL URL."""
    if isinstance(db, str):
        import psycopg  # a dev dependency: blocking reads, as sqlite3's

        with psycopg.connect(db, connect_timeout=30) as conn:
            return list(conn.execute(sql.replace("?", "%s"), args).fetchall())  # type: ignore[arg-type]
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        return list(conn.execute(sql, args).fetchall())


def server_attempts(db: Path | str) -> list[ServerAttempt]:
    """Every attempt the server recorded (read-only, straight from its database)."""
    rows = _query(
        db,
        "SELECT task_id, attempt, worker, execution_key, time_started, time_terminated, "
        "exit_status FROM attempts",
    )
    return [ServerAttempt(*row) for row in rows]


def open_attempts(db: Path | str, worker: str) -> list[ServerAttempt]:
    return [a for a in server_attempts(db) if a.worker == worker and a.ended is None]


async def wait_until(
    condition: Callable[[], Awaitable[object]], timeout_s: float, what: str, interval: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(interval)


# --- HTTP ----------------------------------------------------------------------------


class Api:
    """JSON over aiohttp; a request that gets no answer returns ``(None, None)``."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 30) -> None:
        self.url = url
        self.session = aiohttp.ClientSession(
            headers={"Authorization": basic_auth_header(token)},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        )

    @property
    def ws_url(self) -> str:
        return "ws://" + self.url.removeprefix("http://")

    async def call(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> tuple[int | None, Any]:
        try:
            async with self.session.request(
                method, self.url + path, json=body, params=params
            ) as resp:
                text = await resp.read()
                try:
                    parsed = json.loads(text) if text else None
                except ValueError:
                    parsed = None
                return resp.status, parsed
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None, None

    async def ok(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        query = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
        status, data = await self.call(method, path, body, query or None)
        assert status is not None and 200 <= status < 300, (method, path, status, data)
        return data

    async def submit(self, history: History, tasks: list[dict[str, Any]]) -> bool:
        """POST ``tasks`` (a bulk list, or one object when there is one) and record it."""
        sent = time.time()
        status, _ = await self.call("POST", "/tasks", tasks if len(tasks) > 1 else tasks[0])
        acked = status is not None and 200 <= status < 300
        history.submits.append(Submit(tuple(t["_id"] for t in tasks), sent, acked, status))
        return acked

    async def submit_all(self, history: History, tasks: list[dict[str, Any]]) -> None:
        """Submit where no fault is injected: a 503 (database busy) is retried a few
        times, as a client would; any other failure ends the scenario."""
        for _ in range(5):
            sent = time.time()
            status, body = await self.call("POST", "/tasks", tasks)
            acked = status is not None and 200 <= status < 300
            history.submits.append(Submit(tuple(t["_id"] for t in tasks), sent, acked, status))
            if acked:
                return
            if status != 503:
                break
            await asyncio.sleep(1)
        raise AssertionError(f"bulk POST of {len(tasks)} tasks failed: {status} {body}")

    async def count(self, where: dict[str, Any]) -> int:
        body = await self.ok("GET", "/tasks", where=where, max_results="1")
        return int(body["_meta"]["total"])

    async def find_all(self, where: dict[str, Any], projection: dict[str, int]) -> list[Any]:
        out: list[Any] = []
        page = 1
        while True:
            body = await self.ok(
                "GET",
                "/tasks",
                where=where,
                projection=projection,
                max_results="1000",
                page=str(page),
                sort="_id",
            )
            out += body["_items"]
            if len(out) >= body["_meta"]["total"] or not body["_items"]:
                return out
            page += 1

    async def close(self) -> None:
        await self.session.close()


# --- the event feed ----------------------------------------------------------------


class Subscriber:
    """A raw websocket subscriber to ``/events`` that reconnects with
    ``since=<last seq it got>`` whenever its connection ends, records every
    seq it receives, and hands each event to ``on_event``. It never drops a
    duplicate or reorders: what the server sends is what is recorded.

    ``url`` may be a proxy's, so the connection can be cut under it;
    ``close_after`` (min, max) events makes it hang up by itself at random points.
    """

    def __init__(
        self,
        api: Api,
        *,
        url: str | None = None,
        since: int = 0,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        close_after: tuple[int, int] | None = None,
        seed: int = 0,
    ) -> None:
        self.api = api
        self.ws_url = (url or api.url).replace("http://", "ws://", 1) + "/events"
        self.feed = Feed(since=since)
        self.last = since
        self.on_event = on_event
        self.close_after = close_after
        self._random = __import__("random").Random(seed)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                await self._connection()
            await asyncio.sleep(0.05)

    async def _connection(self) -> None:
        budget = self._random.randint(*self.close_after) if self.close_after else -1
        async with self.api.session.ws_connect(
            self.ws_url, params={"since": str(self.last)}, heartbeat=5, max_msg_size=0
        ) as ws:
            self.feed.connections += 1
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                frame = json.loads(msg.data)
                if "seq" not in frame or frame.get("type", "").startswith("feed."):
                    continue
                seq = int(frame["seq"])
                self.feed.seqs.append(seq)
                self.last = max(self.last, seq)
                if self.on_event is not None:
                    self.on_event(frame)
                budget -= 1
                if budget == 0:
                    break  # hang up here; the next connection resumes with since


async def feed_head(api: Api) -> int:
    """The newest seq the server has."""
    async with api.session.ws_connect(api.ws_url + "/events") as ws:
        msg = await ws.receive(timeout=30)
        return int(json.loads(msg.data)["seq"])


def reference_seqs(db: Path | str, since: int, head: int) -> list[int]:
    """Every event seq the server stored after ``since`` up to ``head`` (the reference,
    read straight from its database rather than from the feed under test)."""
    rows = _query(
        db, "SELECT seq FROM events WHERE seq > ? AND seq <= ? ORDER BY seq", (since, head)
    )
    return [int(r[0]) for r in rows]
