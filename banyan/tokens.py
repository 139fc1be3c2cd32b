"""Tokens and roles (SPEC §5). A token is shown once, when made; the store keeps
only its SHA-256, and lookups compare digests in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

from banyan.constants import TOKEN_PREFIX


class Role(StrEnum):
    ADMIN = "admin"  # everything
    PROVIDER = "provider"  # submits; reads all tasks, changes only its own
    WORKER = "worker"  # claims and reports on the attempts it holds


@dataclass(frozen=True)
class Caller:
    """Who is making a request: the token's name and role."""

    name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def may_change(self, owner: str) -> bool:
        """Providers change only their own tasks; admins change any."""
        return self.role is Role.ADMIN or (self.role is Role.PROVIDER and owner == self.name)


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def same_digest(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode(), b.encode())


def token_from_header(header: str | None) -> str | None:
    """The token in ``Authorization: Basic base64(token:)`` or ``Bearer token``.

    ``None`` when absent or garbled; the caller answers 401 either way.
    """
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        user, _, _password = decoded.partition(":")
        return user or None
    return None


def basic_auth_header(token: str) -> str:
    """The header value clients send: Basic auth with the token as user name."""
    return "Basic " + base64.b64encode(f"{token}:".encode()).decode("ascii")
