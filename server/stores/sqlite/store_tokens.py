"""The tokens part of ``SqliteStore``: creating, listing, revoking and
verifying access tokens (mixed into the store class)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection

from banyan.tokens import Caller, Role, generate_token, hash_token
from server.stores.base import TokenInfo
from server.stores.sqlite import queries as Q
from server.stores.sqlite import tokens
from server.stores.sqlite.db import Database
from server.stores.sqlite.rows import placeholders


class TokenMethods:
    # Set by ``SqliteStore.__init__``.
    db: Database
    _clock: Callable[[], float]

    async def create_token(self, name: str, role: Role) -> str:
        tokens.check_name(name)
        token = generate_token()
        now = self._clock()
        await self.db.write(lambda conn: tokens.create(conn, name, role, token, now))
        return token

    async def list_tokens(self) -> list[TokenInfo]:
        return await self.db.read(tokens.list_all)

    async def revoke_token(self, name: str) -> None:
        now = self._clock()
        await self.db.write(lambda conn: tokens.revoke(conn, name, now))

    async def verify_token(self, token: str) -> Caller | None:
        digest = hash_token(token)
        return await self.db.read(lambda conn: tokens.verify(conn, digest))

    async def token_mark(self) -> tuple[float, ...]:
        def run(conn: sqlite3.Connection) -> tuple[float, ...]:
            return tuple(conn.execute(Q.TOKEN_MARK).fetchone())

        return await self.db.read(run)

    async def live_token_names(self, names: Collection[str]) -> set[str]:
        wanted = sorted(set(names))

        def run(conn: sqlite3.Connection) -> set[str]:
            live: set[str] = set()
            for start in range(0, len(wanted), 500):  # under SQLite's variable limit
                chunk = wanted[start : start + 500]
                rows = conn.execute(
                    Q.LIVE_TOKEN_NAMES.format(names=placeholders(len(chunk))), chunk
                )
                live.update(n for (n,) in rows)
            return live

        return await self.db.read(run) if wanted else set()
