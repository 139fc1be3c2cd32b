"""An async client for the Banyan REST API and event feed, for the CLI, the
TUI and any other program::

    async with Client(discover()) as client:
        task_id = (await client.submit({"command": "echo hi", "state": "available"}))["_id"]
        async for event in client.events(since=0):
            ...

Errors come back as the same ``BanyanError`` subclasses the server raised
(``NotFound``, ``Conflict``, …); a server that cannot be reached raises
``ServerUnreachable`` (for a certificate that does not verify, one that
says to pass ``--ca-cert``). ``events()`` reconnects by itself and resumes from the
last ``seq`` it yielded, so a caller sees every event once, in order.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import aiohttp

from banyan.client.discovery import Connection
from banyan.client.tls import unreachable
from banyan.documents import TaskDoc, WorkerDoc
from banyan.errors import BanyanError, ServerUnreachable
from banyan.tokens import basic_auth_header

RECONNECT_MAX_S = 5.0
Json = Any


class Client:
    def __init__(
        self,
        connection: Connection,
        *,
        timeout_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.connection = connection
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else connection.ssl
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        headers = {"Authorization": basic_auth_header(self.connection.token)}
        self._session = aiohttp.ClientSession(
            headers=headers, timeout=self._timeout, raise_for_status=False
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use 'async with Client(...)'")
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Json = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Json:
        url = self.connection.server + path
        try:
            async with self.session.request(
                method, url, json=json_body, params=params, headers=headers, ssl=self.ssl
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise unreachable(self.connection.server, exc) from exc
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = {"_error": {"message": text[:200]}}
        if status >= 400:
            raise BanyanError.from_eve(status, body if isinstance(body, dict) else {})
        return body

    # --- tasks -----------------------------------------------------------------

    async def submit(
        self,
        task: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        job_name: str | None = None,
        require_fit: bool = False,
    ) -> Json:
        """One task (returns its meta) or a list (returns ``{"_items": [...]}``),
        as one job; ``_warnings`` lists what no connected worker could ever fit
        (``require_fit``: refused with 422 instead)."""
        params: dict[str, str] = {}
        if job_name is not None:
            params["job_name"] = job_name
        if require_fit:
            params["require_fit"] = "1"
        return await self.request("POST", "/tasks", json_body=task, params=params or None)

    async def job(self, job_id: str) -> dict[str, Any]:
        """One job: name, owner, ``total``, ``counts`` by state, time span."""
        result: dict[str, Any] = await self.request("GET", f"/jobs/{job_id}")
        return result

    async def job_task_ids(self, job_id: str) -> list[str]:
        """Every task id of a job, oldest first (``NotFound`` for an unknown job)."""
        await self.job(job_id)
        ids: list[str] = []
        page = 1
        while True:
            found = await self.find(
                {"job": job_id}, sort="_id", projection={"_id": 1}, max_results=1000, page=page
            )
            ids += [i["_id"] for i in found["_items"]]
            if len(found["_items"]) < 1000:
                return ids
            page += 1

    async def pending_reason(self, task_id: str) -> dict[str, Any]:
        """``{"code", "reason"}``: why the task is not running."""
        result: dict[str, Any] = await self.request("GET", f"/tasks/{task_id}/pending_reason")
        return result

    async def task(self, task_id: str) -> TaskDoc:
        result: TaskDoc = await self.request("GET", f"/tasks/{task_id}")
        return result

    async def find(
        self,
        where: Mapping[str, Any] | None = None,
        *,
        sort: str | None = None,
        projection: Mapping[str, int] | None = None,
        max_results: int | None = None,
        page: int | None = None,
        reasons: bool = False,
    ) -> dict[str, Any]:
        """One page; ``reasons``: each item carries ``_pending_reason``."""
        params: dict[str, str] = {}
        if reasons:
            params["reasons"] = "1"
        if where:
            params["where"] = json.dumps(where)
        if sort:
            params["sort"] = sort
        if projection:
            params["projection"] = json.dumps(projection)
        if max_results is not None:
            params["max_results"] = str(max_results)
        if page is not None:
            params["page"] = str(page)
        result: dict[str, Any] = await self.request("GET", "/tasks", params=params)
        return result

    async def find_all(
        self, where: Mapping[str, Any] | None = None, *, sort: str | None = None, limit: int = 10**6
    ) -> list[TaskDoc]:
        """Every matching task, following the pages (up to ``limit``)."""
        items: list[TaskDoc] = []
        page = 1
        while len(items) < limit:
            found = await self.find(where, sort=sort, max_results=1000, page=page)
            items += found["_items"]
            if len(found["_items"]) < 1000:
                break
            page += 1
        return items[:limit]

    async def update(self, task_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("PATCH", f"/tasks/{task_id}", json_body=changes)
        return result

    async def update_many(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("PATCH", "/tasks", json_body=list(items))
        return result

    async def cancel(self, task_id: str) -> dict[str, Any]:
        """Cancel a task whatever its state: running ones are asked to stop."""
        current = await self.task(task_id)
        target = (
            "pending_cancellation"
            if current["state"] in ("running", "pending_cancellation")
            else "cancelled"
        )
        return await self.update(task_id, {"state": target})

    async def history(self, task_id: str) -> list[dict[str, Any]]:
        result = await self.request("GET", f"/tasks/{task_id}/history")
        return list(result["_items"])

    async def logs(
        self, task_id: str, *, stream: str | None = None, tail: int | None = None
    ) -> dict[str, Any]:
        params = {k: str(v) for k, v in (("stream", stream), ("tail", tail)) if v is not None}
        result: dict[str, Any] = await self.request("GET", f"/tasks/{task_id}/logs", params=params)
        return result

    async def workers(self) -> list[WorkerDoc]:
        result = await self.request("GET", "/workers")
        return list(result["_items"])

    # --- the event feed --------------------------------------------------------

    async def events(
        self,
        *,
        since: int | None = None,
        where: Mapping[str, Any] | None = None,
        types: Sequence[str] | None = None,
        reconnect: bool = True,
    ) -> AsyncIterator[dict[str, Any]]:
        """Events in ``seq`` order; control frames (``feed.resync``) are yielded
        too so the caller can refetch a snapshot. Reconnects and resumes."""
        last = since
        delay = 0.1
        url = self.connection.ws_base + "/events"
        while True:
            params: dict[str, str] = {}
            if last is not None:
                params["since"] = str(last)
            if where:
                params["where"] = json.dumps(where)
            if types:
                params["types"] = ",".join(types)
            try:
                async with self.session.ws_connect(url, params=params, ssl=self.ssl) as ws:
                    delay = 0.1
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        frame = json.loads(msg.data)
                        if frame.get("type") == "feed.hello":
                            head = int(frame["seq"])
                            if last is None or head < last:
                                # None: start from now. Behind what we saw: the
                                # database was restored or replaced, its seqs
                                # start over; the server follows with feed.resync.
                                last = head
                            continue
                        if "seq" in frame:
                            if last is not None and frame["seq"] <= last:
                                continue
                            last = int(frame["seq"])
                        yield frame
            except aiohttp.WSServerHandshakeError as exc:
                raise BanyanError.from_eve(
                    exc.status, {"_error": {"message": exc.message}}
                ) from exc
            except aiohttp.ClientConnectorCertificateError as exc:
                raise unreachable(url, exc) from exc  # retrying will not help
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                if not reconnect:
                    raise ServerUnreachable(f"event feed lost: {exc}") from exc
            if not reconnect:
                return
            await asyncio.sleep(delay)
            delay = min(RECONNECT_MAX_S, delay * 2)


async def check_tls(connection: Connection, *, timeout_s: float = 10.0) -> None:
    """Fail fast on what retrying cannot fix: for an https:// server, a
    certificate that does not verify or a server that does not speak TLS
    (``ServerUnreachable``). Any other outcome, a server that is down
    included, passes: long-running clients wait for the server."""
    if not connection.server.startswith("https://"):
        return
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(connection.server + "/health", ssl=connection.ssl),
        ):
            pass
    except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientConnectorSSLError) as exc:
        raise unreachable(connection.server, exc) from exc
    except (aiohttp.ClientError, OSError, TimeoutError):
        pass
