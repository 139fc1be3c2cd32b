"""Who is calling: the token from ``Authorization`` (Basic with the token as
user name, or Bearer), checked against the store, cached for
``token_cache_s`` so a request does not pay a database hop for it. The
revocation watch (``server.revocation``) drops the whole cache as soon as it
sees a token revoked, also by another process, so a revoked token is not
honoured from the cache.
"""

from __future__ import annotations

import time
from collections.abc import Collection

from aiohttp import web

from banyan.errors import Forbidden, Unauthorized
from banyan.tokens import Caller, Role, hash_token, token_from_header
from server.stores.base import Store

ANY_ROLE = frozenset(Role)
PROVIDERS = frozenset({Role.PROVIDER, Role.ADMIN})
WORKERS = frozenset({Role.WORKER, Role.ADMIN})
ADMINS = frozenset({Role.ADMIN})
_CACHE_MAX = 10_000


class Authenticator:
    def __init__(self, store: Store, *, cache_s: float) -> None:
        self._store = store
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, Caller]] = {}

    async def caller(self, request: web.Request) -> Caller:
        token = token_from_header(request.headers.get("Authorization"))
        if token is None or len(token) > 512:
            raise Unauthorized("a token is required: 'Authorization: Basic base64(<token>:)'")
        digest = hash_token(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < self._cache_s:
            return cached[1]
        caller = await self._store.verify_token(token)
        if caller is None:
            self._cache.pop(digest, None)
            raise Unauthorized("the token is unknown or revoked")
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[digest] = (now, caller)
        return caller

    def forget(self) -> None:
        """Drop every cached token (a token was revoked, here or elsewhere)."""
        self._cache.clear()


AUTH = web.AppKey("auth", Authenticator)


def _a(word: str) -> str:
    """``"an admin"``, ``"a worker"``: the article English wants before ``word``."""
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


async def require(request: web.Request, roles: Collection[Role]) -> Caller:
    """The caller, if its role is one of ``roles``; else 401/403."""
    caller = await request.app[AUTH].caller(request)
    if caller.role not in roles:
        allowed = " or ".join(sorted(r.value for r in roles))
        raise Forbidden(f"this needs {_a(allowed)} token; yours is {_a(caller.role.value)} token")
    return caller
