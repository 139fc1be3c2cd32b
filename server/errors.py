"""One middleware turns every failure into Eve's error shape with the right
status: our ``BanyanError`` tree, aiohttp's own HTTP errors (unknown route,
wrong method, body too large), and, as a last resort, anything unexpected
(logged with its traceback here, never shown to the client).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from banyan.errors import BadRequest, BanyanError, InvalidInput
from banyan.models import READ_ONLY_FIELDS

log = logging.getLogger(__name__)
_TYPE_TAG = re.compile(
    r"^(int|float|str|bool|none|list\[.*\]|dict\[.*\]|function-.*|json-or-python\[.*\]"
    r"|union\[.*\]|constrained-.*|lax-.*|chain\[.*\]|tagged-union\[.*\])$"
)

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
        return error_response(413, "request body is too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason, headers=_passthrough(exc))
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(500, "internal server error; the server log has the details")


def _passthrough(exc: web.HTTPException) -> dict[str, str] | None:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else None


def from_validation(exc: ValidationError, *, prefix: str = "", what: str = "input") -> BanyanError:
    """A pydantic error as Eve's 400 (malformed JSON) or 422 (content) with ``_issues``."""
    issues: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        if error["type"] == "json_invalid":
            return BadRequest(f"malformed JSON: {error['msg'].removeprefix('Invalid JSON: ')}")
        # Union branches add their type names to the location; keep the path only.
        loc = [str(p) for p in error["loc"] if not _TYPE_TAG.match(str(p))]
        field = ".".join(loc)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            name = loc[-1] if loc else field
            message = "read-only field" if name in READ_ONLY_FIELDS else "unknown field"
        key = f"{prefix}{field}" if field else (prefix.rstrip(".") or "body")
        issues.setdefault(key, message)
    first = next(iter(issues.items()))
    extra = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
    return InvalidInput(f"invalid {what}: {first[0]}: {first[1]}{extra}", issues=issues)
