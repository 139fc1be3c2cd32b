"""Revocation is immediate everywhere (issue 11): a revoked token's open
websockets (worker gateway and event feed) are closed with 4401, and its
cached check is forgotten.

``banyan-server token revoke`` writes the database from another process, so
the server cannot be told: every ``period_s`` (``revocation_check_s``, 0.25 s)
it reads a summary of the tokens table (``Store.token_mark``: counts and the
newest revocation, one indexed query); when that changes it forgets every
cached token and asks which of the tokens its sockets use are still live.
Writes do not wait for this: a claim or a ``finished`` report checks its token
inside its own transaction (``check_not_revoked`` in the SQLite store), so
none is applied after the revocation's commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Sequence
from typing import Protocol

from banyan.errors import BanyanError
from server.auth import Authenticator
from server.stores.base import Store

log = logging.getLogger(__name__)


class SocketHolder(Protocol):
    """Something that keeps websockets open for tokens (the gateway, the feed)."""

    def tokens_in_use(self) -> set[str]: ...

    async def close_revoked(self, tokens: Collection[str]) -> int: ...


class RevocationWatch:
    def __init__(
        self,
        store: Store,
        auth: Authenticator,
        holders: Sequence[SocketHolder],
        *,
        period_s: float,
    ) -> None:
        self._store = store
        self._auth = auth
        self._holders = holders
        self._period_s = period_s

    async def run(self) -> None:
        """The background loop (a side task of the app)."""
        mark = await self._mark()
        while True:
            await asyncio.sleep(self._period_s)
            now = await self._mark()
            if now is None or now == mark:
                continue
            try:
                await self.check()
            except BanyanError as exc:  # not checked: look again next period
                log.warning("checking for revoked tokens failed: %s", exc)
                continue
            mark = now

    async def _mark(self) -> tuple[float, ...] | None:
        try:
            return await self._store.token_mark()
        except BanyanError as exc:  # e.g. the database is busy: look again next period
            log.debug("token check failed: %s", exc)
            return None

    async def check(self) -> int:
        """A token changed: forget the cached ones, close the sockets of
        revoked ones; returns how many sockets were closed."""
        self._auth.forget()
        in_use: set[str] = set()
        for holder in self._holders:
            in_use |= holder.tokens_in_use()
        if not in_use:
            return 0
        started = time.monotonic()
        revoked = in_use - await self._store.live_token_names(in_use)
        if not revoked:
            return 0
        closed = 0
        for holder in self._holders:
            closed += await holder.close_revoked(revoked)
        log.warning(
            "token%s %s revoked: closed %d connection%s in %.3f s",
            "s" if len(revoked) > 1 else "",
            ", ".join(sorted(revoked)),
            closed,
            "" if closed == 1 else "s",
            time.monotonic() - started,
        )
        return closed
