"""Where the TUI's data comes from: the ``DataSource`` protocol the app talks
to, and ``LiveSource``, its implementation on ``banyan.client.Client``.

The app never touches the network itself: it calls these coroutines from
Textual workers. Tests and the benchmark hand it ``tui.fake.FakeSource``
instead.

``events(since)`` is one connection to the event feed: it yields the
server's ``feed.hello`` first (with the head ``seq``), then events and
``feed.resync`` frames, and ends (or raises ``ServerUnreachable``) when the
connection does. Reconnecting, with ``since`` set to the last ``seq``
received, is the app's job, so that it can say "reconnecting…" meanwhile.

With standby servers (``--server A --server B``) the client switches to the
next one when the one in use cannot be reached (``Client.fail_over``), the
feed too: the app's next reconnect, with the same ``since``, goes there.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, cast

import aiohttp

from banyan.client import Client, Connection, link_after, walk_tree
from banyan.client.tls import unreachable
from banyan.client.trees import descendants, doc_continuations
from banyan.documents import ExplainedTaskDoc, TaskDoc, WorkerDoc
from banyan.errors import BanyanError, NotFound, ServerUnreachable

RECENT_TASKS = 10_000  # the snapshot's most recent tasks, whatever their state
MAX_OPEN_TASKS = 100_000  # and every task not yet ended, up to this many
PAGE = 1000  # the server's max_results limit
OPEN_STATES = ["inactive", "available", "running", "pending_cancellation"]
# Everything the table and the tree need; env and cwd only matter in the detail
# view, which fetches the whole task.
SNAPSHOT_PROJECTION = {"env": 0, "cwd": 0}
FEED_HEARTBEAT_S = 10.0  # ping the feed: a dead connection is noticed within ~2x this


@dataclass
class Snapshot:
    tasks: list[TaskDoc]
    workers: list[WorkerDoc]
    stats: dict[str, Any] | None  # None: the server has no /stats
    total_tasks: int | None = None  # on the server, when known
    truncated: bool = False  # more open tasks than MAX_OPEN_TASKS
    notes: list[str] = field(default_factory=list)
    # The newest jobs' names (``GET /jobs``), by id: a job not in it is named
    # after its first task, as the server names it by default.
    job_names: dict[str, str] = field(default_factory=dict)


class DataSource(Protocol):
    """What the TUI reads and does; every call may raise ``BanyanError``."""

    @property
    def server(self) -> str: ...

    async def snapshot(self) -> Snapshot: ...

    def events(self, since: int | None) -> AsyncIterator[dict[str, Any]]: ...

    async def submit(self, task: dict[str, Any], *, after: Sequence[str] = ()) -> str: ...

    async def cancel(self, ids: Sequence[str]) -> dict[str, str]: ...

    async def cancel_tree(self, task_id: str) -> dict[str, str]: ...

    async def retry(self, ids: Sequence[str]) -> dict[str, str]: ...

    async def task(self, task_id: str) -> TaskDoc: ...

    async def pending_reasons(self, ids: Sequence[str]) -> dict[str, str]: ...

    async def history(self, task_id: str) -> list[dict[str, Any]]: ...

    async def logs(self, task_id: str, *, tail: int) -> dict[str, Any]: ...

    async def memory_usage(self, task_id: str) -> list[dict[str, Any]]: ...

    async def tree(self, task_id: str) -> dict[str, TaskDoc]: ...

    async def workers(self) -> list[WorkerDoc]: ...

    async def stats(self) -> dict[str, Any] | None: ...


class LiveSource:
    """A ``DataSource`` on a real server: ``async with LiveSource(conn) as source``."""

    def __init__(
        self,
        connection: Connection,
        *,
        recent: int = RECENT_TASKS,
        max_open: int = MAX_OPEN_TASKS,
        timeout_s: float = 30.0,
    ) -> None:
        self.connection = connection
        self.client = Client(connection, timeout_s=timeout_s)
        self.recent = recent
        self.max_open = max_open

    async def __aenter__(self) -> LiveSource:
        await self.client.__aenter__()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.client.close()

    @property
    def server(self) -> str:
        """The server in use (the client may have switched to a standby)."""
        return self.client.connection.server

    # --- reading ----------------------------------------------------------------

    async def _newest(self, where: dict[str, Any], limit: int) -> tuple[list[TaskDoc], bool]:
        """Up to ``limit`` matching tasks, newest first by creation time (client-chosen
        ids sort anywhere), and whether there were more. Paged by number: a task
        created meanwhile pushes the rest down a row, which repeats one (the caller
        keys them by id) and never skips one."""
        items: list[TaskDoc] = []
        page = 1
        size = min(PAGE, limit)  # one size for every page, or page numbers shift
        while len(items) < limit:
            found = (
                await self.client.find(
                    where or None,
                    sort="-_created,-_id",
                    projection=SNAPSHOT_PROJECTION,
                    max_results=size,
                    page=page,
                    reasons=True,
                )
            )["_items"]
            items += found[: limit - len(items)]
            if len(found) < size:
                return items, False
            page += 1
        return items, True

    async def snapshot(self) -> Snapshot:
        recent, _ = await self._newest({}, self.recent)
        open_tasks, truncated = await self._newest({"state": {"$in": OPEN_STATES}}, self.max_open)
        by_id = {t["_id"]: t for t in open_tasks}
        by_id.update({t["_id"]: t for t in recent})
        stats = await self.stats()
        total = None
        if stats is not None and isinstance(stats.get("tasks", {}).get("total"), int):
            total = int(stats["tasks"]["total"])
        notes = [f"more than {self.max_open:,} open tasks: the oldest are not loaded"]
        return Snapshot(
            job_names=await self._job_names(),
            tasks=list(by_id.values()),
            workers=await self.workers(),
            stats=stats,
            total_tasks=total,
            truncated=truncated,
            notes=notes if truncated else [],
        )

    async def _job_names(self) -> dict[str, str]:
        """The names of the newest ``PAGE`` jobs (a server without /jobs: none)."""
        try:
            found = await self.client.request(
                "GET",
                "/jobs",
                params={"sort": "-_id", "max_results": str(PAGE), "projection": '{"name": 1}'},
            )
        except NotFound:
            return {}
        return {j["_id"]: j["name"] for j in found["_items"] if j.get("name")}

    async def events(self, since: int | None) -> AsyncIterator[dict[str, Any]]:
        params = {} if since is None else {"since": str(since)}
        server = self.client.connection.server
        url = self.client.connection.ws_base + "/events"
        try:
            async with self.client.session.ws_connect(
                url, params=params, heartbeat=FEED_HEARTBEAT_S, ssl=self.client.ssl
            ) as ws:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    yield json.loads(msg.data)
        except aiohttp.WSServerHandshakeError as exc:
            raise BanyanError.from_eve(exc.status, {"_error": {"message": exc.message}}) from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            raise unreachable(url, exc) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if isinstance(exc, aiohttp.ClientConnectorError):
                self.client.fail_over(server)  # the next reconnect tries the next server
            raise ServerUnreachable(f"event feed lost: {exc}") from exc

    async def task(self, task_id: str) -> TaskDoc:
        """The whole task; one that is not running carries ``_pending_reason``."""
        doc = cast(ExplainedTaskDoc, await self.client.task(task_id))
        if doc.get("state") != "running":
            doc["_pending_reason"] = await self.client.pending_reason(task_id)
        return doc

    async def pending_reasons(self, ids: Sequence[str]) -> dict[str, str]:
        """Why each of these tasks waits: one ``GET /tasks?reasons=1`` per
        ``PAGE`` ids (the server's message, whatever its code)."""
        found: dict[str, str] = {}
        for start in range(0, len(ids), PAGE):
            part = list(ids[start : start + PAGE])
            page = await self.client.find(
                {"_id": {"$in": part}},
                projection={"state": 1},
                max_results=len(part),
                reasons=True,
            )
            for item in page["_items"]:
                reason = (item.get("_pending_reason") or {}).get("reason")
                if reason:
                    found[item["_id"]] = str(reason)
        return found

    async def history(self, task_id: str) -> list[dict[str, Any]]:
        return await self.client.history(task_id)

    async def logs(self, task_id: str, *, tail: int) -> dict[str, Any]:
        return await self.client.logs(task_id, tail=tail)

    async def memory_usage(self, task_id: str) -> list[dict[str, Any]]:
        params = {"where": json.dumps({"task": task_id}), "max_results": str(PAGE)}
        params["sort"] = "-time"
        found = await self.client.request("GET", "/memory_usage", params=params)
        return list(reversed(found.get("_items", [])))

    async def tree(self, task_id: str) -> dict[str, TaskDoc]:
        return await walk_tree(self.client, await self.client.task(task_id), max_tasks=5_000)

    async def workers(self) -> list[WorkerDoc]:
        return await self.client.workers()

    async def stats(self) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self.client.request("GET", "/stats")
        except NotFound:
            return None  # an older server
        return found

    # --- doing ------------------------------------------------------------------

    async def submit(self, task: dict[str, Any], *, after: Sequence[str] = ()) -> str:
        body = dict(task)
        if after:
            body["state"] = "inactive"  # linked first; the server starts it
        created = await self.client.submit(body)
        task_id = str(created["_id"])
        if after:
            try:
                await link_after(self.client, list(after), [task_id])
            except BanyanError:
                with contextlib.suppress(BanyanError):
                    await self.client.update(task_id, {"state": "cancelled"})
                raise
        return task_id

    async def cancel(self, ids: Sequence[str]) -> dict[str, str]:
        return {i: str((await self.client.cancel(i))["state"]) for i in ids}

    async def cancel_tree(self, task_id: str) -> dict[str, str]:
        tasks = await walk_tree(self.client, await self.client.task(task_id))
        targets = [task_id, *descendants(tasks, task_id, doc_continuations)]
        live = [t for t in targets if tasks[t]["state"] not in ("terminated", "cancelled")]
        done: dict[str, str] = {}
        for target in live:
            try:
                done[target] = str((await self.client.cancel(target))["state"])
            except BanyanError as exc:
                # Cancelling the root cancels what waits on it: a later one may be gone.
                if exc.status >= 500:
                    raise
        return done

    async def retry(self, ids: Sequence[str]) -> dict[str, str]:
        return {i: str((await self.client.update(i, {"state": "available"}))["state"]) for i in ids}
