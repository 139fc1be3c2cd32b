"""An async client for the Banyan REST API and event feed, for the CLI, the
TUI and any other program::

    async with Client(discover()) as client:
        task_id = (await client.submit({"command": "echo hi", "state": "available"}))["_id"]
        async for event in client.events(since=0):
            ...

Errors come back as the same ``BanyanError`` subclasses the server raised
(``NotFound``, ``Conflict``, …); a server that cannot be reached raises
``ServerUnreachable`` (for a certificate that does not verify, one that
says to pass ``--ca-cert``). ``events()`` (``banyan.client.feed``) reconnects
by itself and resumes from the last ``seq`` it yielded, so a caller sees every
event once, in order.

``transport="stdlib"`` sends the REST requests with ``http.client``
(``banyan.client.blocking``) instead of aiohttp, which is then imported only
if the event feed is used: a short-lived program (the CLI) starts faster.

Failover: a ``Connection`` with ``fallbacks`` (``--server A --server B``)
switches to the next server when the one in use cannot be reached, and
stays there. A request goes to the next server at once when it was never
sent (the connection was refused, the host is unreachable) or when sending
it twice does no harm (a GET, a keyed submit); a round that reached no
server is one failure for the retry rule below, and the error names every
server tried. The event feed switches the same way and resumes with
``since`` on the next server.

``submit()`` is safe to retry: it sends a fresh ``Idempotency-Key`` with each
call and, when the connection fails (refused, reset, timed out), sends the
same request with the same key again, up to ``submit_retries`` times with a
doubling pause. A server that committed the tasks but died before it
answered gives the original answer to the retry, and nothing is created
twice.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import ssl
import uuid
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from banyan.client.blocking import CONNECT_TIMEOUT_S, BlockingSender, NotSent
from banyan.client.discovery import Connection
from banyan.client.feed import RECONNECT_MAX_S as RECONNECT_MAX_S  # re-exported
from banyan.client.feed import FeedMethods
from banyan.client.tls import check_tls as check_tls  # re-exported
from banyan.client.tls import unreachable
from banyan.constants import IDEMPOTENCY_HEADER
from banyan.documents import TaskDoc, WorkerDoc
from banyan.errors import BanyanError, ServerUnreachable
from banyan.tokens import basic_auth_header

if TYPE_CHECKING:
    import aiohttp


# A submit whose connection fails is sent again this many times, after
# 0.25 s, 0.5 s, … (at most RETRY_MAX_S each): about 30 s in all, what a server
# restart takes.
SUBMIT_RETRIES = 8
RETRY_FIRST_S = 0.25
RETRY_MAX_S = 5.0
Json = Any
Transport = Literal["aiohttp", "stdlib"]
# Methods a server that may have received them can be sent again (on another).
_SAFE_AGAIN = frozenset({"GET", "HEAD", "OPTIONS"})
log = logging.getLogger(__name__)


class _Failed(Exception):
    """One try that reached no answer: the error to raise, its cause, and
    whether the request may have reached the server."""

    def __init__(self, error: ServerUnreachable, cause: BaseException, *, sent: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.cause = cause
        self.sent = sent


class Client(FeedMethods):
    def __init__(
        self,
        connection: Connection,
        *,
        timeout_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        transport: Transport = "aiohttp",
        submit_retries: int | None = None,
        retry_first_s: float | None = None,
    ) -> None:
        self.connection = connection
        self._timeout_s = timeout_s
        # None: the module's figures, read now (so a test can shorten them).
        self.submit_retries = SUBMIT_RETRIES if submit_retries is None else submit_retries
        self.retry_first_s = RETRY_FIRST_S if retry_first_s is None else retry_first_s
        self.ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else connection.ssl
        self.transport = transport
        self._session: aiohttp.ClientSession | None = None
        self._sender: BlockingSender | None = None
        self._retired: list[BlockingSender] = []  # senders to servers switched away from
        self._entered = False

    def _headers(self) -> dict[str, str]:
        return {"Authorization": basic_auth_header(self.connection.token)}

    async def __aenter__(self) -> Client:
        self._entered = True
        if self.transport == "stdlib":
            self._sender = self._new_sender()
        else:
            self._open_session()
        return self

    def _new_sender(self) -> BlockingSender:
        return BlockingSender(
            self.connection.server,
            headers=self._headers(),
            timeout_s=self._timeout_s,
            ssl_context=self.ssl,
        )

    def fail_over(self, failed: str) -> bool:
        """Switch to the next server if ``failed`` is still the one in use (a
        request that failed meanwhile may have switched already); whether
        there is another server to switch to."""
        if not self.connection.fallbacks:
            return False
        if self.connection.server == failed:
            self.connection = self.connection.failover()
            log.info("cannot reach %s: switching to %s", failed, self.connection.server)
            if self._sender is not None:
                # Closed now unless a request (in a thread) still uses it: then at close().
                if not self._sender.close(wait=False):
                    self._retired.append(self._sender)
                self._sender = self._new_sender()
        return True

    def _open_session(self) -> aiohttp.ClientSession:
        import aiohttp  # here: a stdlib client imports it only for the event feed

        self._session = aiohttp.ClientSession(
            headers=self._headers(),
            timeout=aiohttp.ClientTimeout(
                total=self._timeout_s, sock_connect=min(self._timeout_s, CONNECT_TIMEOUT_S)
            ),
            raise_for_status=False,
        )
        return self._session

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._entered = False
        for retired in self._retired:
            retired.close()
        self._retired.clear()
        if self._sender is not None:
            self._sender.close()
            self._sender = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session (opened on first use by a stdlib client)."""
        if not self._entered:
            raise RuntimeError("use 'async with Client(...)'")
        return self._session if self._session is not None else self._open_session()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Json = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        retries: int = 0,
    ) -> Json:
        """One request; a failed connection is tried ``retries`` more times
        (only for requests that are safe to repeat, such as a keyed submit),
        each time on every server of the connection (see the module doc)."""
        attempt = 0
        failures: dict[str, str] = {}  # this round's, by server
        while True:
            server = self.connection.server
            try:
                status, text = await self._send_once(method, path, json_body, params, headers)
                break
            except _Failed as failed:
                if not _worth_retrying(failed.cause):
                    raise failed.error from failed.cause
                failures[server] = failed.error.message
                again = retries > 0 or method in _SAFE_AGAIN or not failed.sent
                others = [s for s in self.connection.servers if s not in failures]
                if again and others and self.fail_over(server):
                    continue
                error = _round_error(failures, failed.error)
                if attempt >= retries:
                    raise error from failed.cause
                if attempt == 0:  # as sbatch does: say why it waits, once
                    log.warning(
                        "%s; trying again for up to %.0f s (Ctrl-C stops; a repeat "
                        "creates nothing twice)",
                        error.message,
                        _retry_budget_s(self.retry_first_s, retries),
                    )
                await asyncio.sleep(min(RETRY_MAX_S, self.retry_first_s * 2**attempt))
                attempt += 1
                failures = {}
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = {"_error": {"message": text[:200]}}
        if status >= 400:
            raise BanyanError.from_eve(status, body if isinstance(body, dict) else {})
        return body

    async def _send_once(
        self,
        method: str,
        path: str,
        json_body: Json,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[int, str]:
        """One try over the chosen transport, to the server in use; a failed
        connection is ``_Failed``."""
        server = self.connection.server
        if self._sender is not None:
            payload = None if json_body is None else json.dumps(json_body).encode()
            try:
                return await self._sender.send(
                    method, path, body=payload, params=params, headers=headers
                )
            except NotSent as exc:
                cause = exc.__cause__ or exc
                raise _Failed(unreachable(server, cause), cause, sent=False) from cause
            except (OSError, http.client.HTTPException) as exc:  # ssl errors are OSErrors
                raise _Failed(unreachable(server, exc), exc, sent=True) from exc
        import aiohttp

        try:
            async with self.session.request(
                method, server + path, json=json_body, params=params, headers=headers, ssl=self.ssl
            ) as resp:
                return resp.status, await resp.text()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            # ClientConnectorError: the connection was never made, nothing was sent.
            sent = not isinstance(exc, aiohttp.ClientConnectorError)
            raise _Failed(unreachable(server, exc), exc, sent=sent) from exc

    # --- tasks -----------------------------------------------------------------

    async def submit(
        self,
        task: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        job_name: str | None = None,
        require_fit: bool = False,
        idempotency_key: str | None = None,
    ) -> Json:
        """One task (returns its meta) or a list (returns ``{"_items": [...]}``),
        as one job; ``_warnings`` lists what no connected worker could ever fit
        (``require_fit``: refused with 422 instead). Sent under
        ``idempotency_key`` (a fresh one by default) and retried on a failed
        connection: at most once created, whatever the network did."""
        params: dict[str, str] = {}
        if job_name is not None:
            params["job_name"] = job_name
        if require_fit:
            params["require_fit"] = "1"
        key = idempotency_key or uuid.uuid4().hex
        return await self.request(
            "POST",
            "/tasks",
            json_body=task,
            params=params or None,
            headers={IDEMPOTENCY_HEADER: key},
            retries=self.submit_retries,
        )

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


def _round_error(failures: Mapping[str, str], last: ServerUnreachable) -> ServerUnreachable:
    """The error after a round that reached no server: ``last`` for one
    server, else one line naming each."""
    if len(failures) < 2:
        return last
    return ServerUnreachable(
        f"cannot reach any of {len(failures)} Banyan servers: " + "; ".join(failures.values())
    )


def _retry_budget_s(first_s: float, retries: int) -> float:
    """The pauses of ``retries`` tries (the time of the tries not counted)."""
    return sum(min(RETRY_MAX_S, first_s * 2.0**attempt) for attempt in range(retries))


def _worth_retrying(cause: BaseException | None) -> bool:
    """A refused, reset or timed-out connection may work next time; a failed
    TLS verification or handshake will not."""
    if isinstance(cause, ssl.SSLError):
        return False
    inner = getattr(cause, "certificate_error", None) or getattr(cause, "os_error", None)
    return not isinstance(inner, ssl.SSLError)
