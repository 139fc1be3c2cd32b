"""Quiet logs for expected network errors.

A server on a network sees clients reset connections, send request lines or
headers over the parser's limits, and, under load, runs out of file
descriptors (asyncio's accept loop then fails on every retry). None of these
is a bug in the server, and a traceback for each one buried real errors: one
descriptor exhaustion logged 300,000 tracebacks (135 MB) in a minute.

Each kind is logged as one WARNING line, at most once per ``period_s``
(10 s) per kind; the ones held back are counted, and the count is logged
when the period ends (``... 1,234 more in the last 10 s``). Installed for
the application's lifetime by :func:`quiet_network_errors` (a
``cleanup_ctx``): a filter on aiohttp's ``aiohttp.server`` logger (malformed
requests, resets while parsing) and an exception handler on the event loop
(``accept()`` out of descriptors or memory). Views report resets through
:func:`connection_reset`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import http_exceptions, web

log = logging.getLogger("server.network")
PERIOD_S = 10.0
# accept() fails with these when the process or the system is out of
# descriptors or buffers; asyncio stops accepting for a second and retries.
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class RateLimitedWarnings:
    """At most one WARNING per kind per period; the rest counted, then summed up."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        period_s: float = PERIOD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._period_s = period_s
        self._clock = clock
        self._last: dict[str, float] = {}  # kind → when its last line was logged
        self._held: dict[str, int] = {}  # kind → held back since then

    def warn(self, kind: str, message: str) -> None:
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._period_s:
            held = self._held.get(kind, 0)
            self._held[kind] = held + 1
            if held == 0:  # the first held back: sum up when the period ends
                self._flush_later(kind, last + self._period_s - now)
            return
        self._last[kind] = now
        self._log.warning("%s", message)

    def flush(self, kind: str) -> None:
        held = self._held.pop(kind, 0)
        if held:
            self._last[kind] = self._clock()
            self._log.warning(
                "%s: %d more in the last %g s (one line per %g s)",
                kind,
                held,
                self._period_s,
                self._period_s,
            )

    def _flush_later(self, kind: str, delay_s: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a test, a thread): the next line sums up
            return
        loop.call_later(max(delay_s, 0.0), self.flush, kind)


WARNINGS = RateLimitedWarnings(log)


def connection_reset(request: web.BaseRequest, exc: BaseException | None = None) -> None:
    """A client reset its connection while a view was reading or writing."""
    why = f": {_short(exc)}" if exc is not None and str(exc) else ""
    WARNINGS.warn(
        "connection reset",
        f"connection reset: {request.remote} went away during {request.method} {request.path}{why}",
    )


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else text[:160] + "…"


class _AiohttpServerFilter(logging.Filter):
    """Turns aiohttp's tracebacks for malformed requests and resets into our lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        # aiohttp logs "Error handling request from %s" with the peer's address.
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "a client"
        if isinstance(exc, http_exceptions.LineTooLong):
            WARNINGS.warn(
                "request line or header too long",
                f"refused a request line or header over the parser's limit from {peer}",
            )
            return False
        if isinstance(exc, http_exceptions.HttpProcessingError):
            WARNINGS.warn(
                "malformed request",
                f"refused a malformed request from {peer}: {type(exc).__name__}: {_short(exc)}",
            )
            return False
        if isinstance(exc, ConnectionError):
            WARNINGS.warn("connection reset", f"connection reset by {peer}")
            return False
        return True


_FILTER = _AiohttpServerFilter()


def _loop_handler(
    previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None,
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _EXHAUSTED:
            WARNINGS.warn(
                "cannot accept connections",
                f"cannot accept connections: {exc.strerror} (errno {exc.errno}); asyncio "
                "retries every second. Raise the descriptor limit (LimitNOFILE, ulimit -n) "
                "or lower the load",
            )
            return
        if isinstance(exc, ConnectionError):
            WARNINGS.warn("connection reset", f"connection reset: {context.get('message')}")
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    return handle


async def quiet_network_errors(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: the aiohttp log filter and the loop's exception handler."""
    server_log = logging.getLogger("aiohttp.server")
    server_log.addFilter(_FILTER)  # the same filter object: adding it twice is a no-op
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(_loop_handler(previous))
    try:
        yield
    finally:
        loop.set_exception_handler(previous)
        server_log.removeFilter(_FILTER)
