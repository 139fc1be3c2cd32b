"""One exception tree for every layer: each error knows its HTTP status.

The server maps these to Eve's error shape in one middleware; the CLI and the
TUI show the same ``message``. ``issues`` maps a field path (``"name"``,
``"requested_resources.memory"``, ``"3.command"`` for item 3 of a bulk body)
to what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class BanyanError(Exception):
    """Base of every error Banyan raises on purpose."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"

    def __init__(self, message: str, *, issues: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.issues: dict[str, str] = dict(issues or {})

    def to_eve(self) -> dict[str, Any]:
        """The Eve error body: ``{"_status": "ERR", "_error": {...}, "_issues": {...}}``."""
        body: dict[str, Any] = {
            "_status": "ERR",
            "_error": {"code": self.status, "message": self.message},
        }
        if self.issues:
            body["_issues"] = self.issues
        return body

    @classmethod
    def from_eve(cls, status: int, body: Mapping[str, Any]) -> BanyanError:
        """Rebuild the error a server sent (used by clients)."""
        error = body.get("_error") or {}
        message = str(error.get("message") or body.get("message") or f"HTTP {status}")
        issues = body.get("_issues") or {}
        kind = _BY_STATUS.get(status, BanyanError)
        exc = kind(message, issues={str(k): str(v) for k, v in dict(issues).items()})
        if kind is BanyanError:
            exc.status = status  # type: ignore[misc]
        return exc


class BadRequest(BanyanError):
    """The request cannot be understood: malformed JSON, a bad query."""

    status = 400
    title = "Bad Request"


class Unauthorized(BanyanError):
    """No token, or a token that is garbled, unknown or revoked."""

    status = 401
    title = "Unauthorized"


class Forbidden(BanyanError):
    """A valid token whose role or ownership does not allow this."""

    status = 403
    title = "Forbidden"


class NotFound(BanyanError):
    status = 404
    title = "Not Found"


class MethodNotAllowed(BanyanError):
    status = 405
    title = "Method Not Allowed"


class Conflict(BanyanError):
    """The request is valid but the current state forbids it (illegal transition, stale key)."""

    status = 409
    title = "Conflict"


class PreconditionFailed(BanyanError):
    """``If-Match`` did not match the item's current ``_etag``."""

    status = 412
    title = "Precondition Failed"


class PreconditionRequired(BanyanError):
    """Strict mode: a change without ``If-Match``."""

    status = 428
    title = "Precondition Required"


class PayloadTooLarge(BanyanError):
    status = 413
    title = "Payload Too Large"


class InvalidInput(BanyanError):
    """Well-formed JSON whose content is wrong: types, units, unknown fields, cycles."""

    status = 422
    title = "Unprocessable Entity"


class Unavailable(BanyanError):
    """The server cannot take writes right now (shutting down, database locked)."""

    status = 503
    title = "Service Unavailable"


class InsufficientStorage(BanyanError):
    """The disk is full: writes are refused, reads still work."""

    status = 507
    title = "Insufficient Storage"


_BY_STATUS: dict[int, type[BanyanError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        PreconditionFailed,
        PreconditionRequired,
        PayloadTooLarge,
        InvalidInput,
        Unavailable,
        InsufficientStorage,
    )
}


class ServerUnreachable(BanyanError):
    """Client side: the server did not answer (down, wrong URL, network)."""

    status = 503
    title = "Server Unreachable"
