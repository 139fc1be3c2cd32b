"""One middleware turns every failure into Eve's error shape with the right
status: our ``BanyanError`` tree (507 when the disk is full, 503 when the
database is busy), aiohttp's own HTTP errors (unknown route, wrong method,
body too large, body too slow), and, as a last resort, anything unexpected
(logged with its traceback here, never shown to the client). A client that
resets its connection is expected, not unexpected: one rate-limited WARNING
line (``server.netlog``). Errors of aiohttp's HTTP parser (request line or
headers too long, too many headers) happen before any middleware and stay
aiohttp's plain-text 400.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from banyan.errors import BanyanError
from server import netlog

log = logging.getLogger(__name__)

Handler = Any


def error_response(
    status: int,
    message: str,
    issues: dict[str, str] | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"_status": "ERR", "_error": {"code": status, "message": message}}
    if issues:
        body["_issues"] = issues
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def eve_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except BanyanError as exc:
        headers = {"WWW-Authenticate": 'Basic realm="banyan"'} if exc.status == 401 else None
        return error_response(exc.status, exc.message, exc.issues, headers=headers)
    except web.HTTPRequestEntityTooLarge:
        limit = request.client_max_size
        return error_response(413, f"the request body is over the limit of {limit} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason, headers=_passthrough(exc))
    except ConnectionError as exc:
        # The client went away (aiohttp's own reset errors subclass this; also a
        # broken pipe during a websocket upgrade):
        # expected on a network, one rate-limited line, no traceback.
        netlog.connection_reset(request, exc)
        return error_response(400, "the client closed the connection")
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(500, "internal server error; the server log has the details")


def _passthrough(exc: web.HTTPException) -> dict[str, str] | None:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else None
