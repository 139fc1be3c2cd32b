"""REST requests over the standard library's ``http.client``, for programs that
start, make a few requests and exit: the ``banyan`` CLI.

Importing aiohttp costs about 0.15 s, most of a CLI call's start time; this
sender costs nothing to import. ``Client(connection, transport="stdlib")``
sends its REST requests through it, each in a thread (``asyncio.to_thread``)
so an event feed read meanwhile keeps flowing, one at a time on one kept-alive
connection. The event feed itself is still aiohttp's websocket, imported when
it is first used. Errors are the ones ``http.client``, ``socket`` and ``ssl``
raise, except that a connection that could not be made (the request never
left) is ``NotSent`` from the original error, so the client knows it may
send any request to another server; ``banyan.client.tls.unreachable`` words
them like aiohttp's.
"""

from __future__ import annotations

import asyncio
import http.client
import ssl
import threading
import urllib.parse
from collections.abc import Mapping

# Methods safe to send again when a kept-alive connection turns out to be closed.
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


# A host that does not answer at all (down, not refusing) is given up on after
# this long, so that a client with standby servers moves on to the next.
CONNECT_TIMEOUT_S = 10.0


class NotSent(Exception):
    """The connection (TCP, and TLS for https) could not be made: nothing was
    sent. The error that says why is ``__cause__``."""


class BlockingSender:
    """One HTTP/1.1 connection to ``server``, reused from request to request."""

    def __init__(
        self,
        server: str,
        *,
        headers: Mapping[str, str],
        timeout_s: float,
        ssl_context: ssl.SSLContext | bool,
    ) -> None:
        parts = urllib.parse.urlsplit(server)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port
        self._base = parts.path.rstrip("/")
        self._headers = dict(headers)
        self._timeout_s = timeout_s
        context = ssl_context if isinstance(ssl_context, ssl.SSLContext) else None
        if self._https and context is None:
            context = ssl.create_default_context()  # the system's trust store
        self._context = context
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> http.client.HTTPConnection:
        timeout_s = min(self._timeout_s, CONNECT_TIMEOUT_S)  # the requests' is set once connected
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout_s, context=self._context
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout_s)

    def send_blocking(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[int, str]:
        """(status, body text) of one request; raises what ``http.client`` raises."""
        target = self._base + path
        if params:
            target += "?" + urllib.parse.urlencode(dict(params))
        sent = {**self._headers, **(headers or {})}
        if body is not None:
            sent["Content-Type"] = "application/json"
        with self._lock:
            reused = self._conn is not None
            while True:
                conn = self._conn or self._connect()
                self._conn = None
                if conn.sock is None:
                    try:
                        conn.connect()
                    except OSError as exc:  # ssl errors are OSErrors too
                        conn.close()
                        raise NotSent(str(exc)) from exc
                    if conn.sock is not None:
                        conn.sock.settimeout(self._timeout_s)
                try:
                    conn.request(method, target, body=body, headers=sent)
                    resp = conn.getresponse()
                    data = resp.read()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    conn.close()
                    # The server closed a kept-alive connection between two requests:
                    # once more on a new one, when sending twice does no harm.
                    if reused and method in _IDEMPOTENT:
                        reused = False
                        continue
                    raise
                except BaseException:
                    conn.close()
                    raise
                if resp.will_close:
                    conn.close()
                else:
                    self._conn = conn
                return resp.status, data.decode("utf-8", errors="replace")

    async def send(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[int, str]:
        return await asyncio.to_thread(
            self.send_blocking, method, path, body=body, params=params, headers=headers
        )

    def close(self, *, wait: bool = True) -> bool:
        """Close the kept-alive connection; ``wait=False``: only if no request
        is using it now (whether it was closed)."""
        if not self._lock.acquire(blocking=wait):
            return False
        try:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        finally:
            self._lock.release()
        return True
