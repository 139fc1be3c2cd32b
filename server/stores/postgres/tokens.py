"""The tokens part of ``PostgresStore`` (mixed into the store class):
creating, listing, revoking and verifying access tokens (only hashes are
stored), and the check every claim and report makes that its token lives."""

from __future__ import annotations

from collections.abc import Callable, Collection

from banyan.errors import Conflict, NotFound, Unauthorized
from banyan.tokens import Caller, Role, generate_token, hash_token, same_digest
from server.domain.tokens import check_name
from server.stores.base import TokenInfo
from server.stores.postgres import queries as Q
from server.stores.postgres.db import Database, Tx


class TokenMethods:
    # Set by ``PostgresStore.__init__``.
    db: Database
    _clock: Callable[[], float]

    # --- tokens ----------------------------------------------------------------

    async def create_token(self, name: str, role: Role) -> str:
        check_name(name)
        token = generate_token()
        now = self._clock()

        async def run(tx: Tx) -> None:
            found = await tx.fetchrow(Q.TOKEN_REVOKED, name)
            if found is not None and found[0] is None:
                raise Conflict(f"a token named {name!r} already exists")
            if found is not None:  # tasks and history name it: never a new holder
                raise Conflict(f"a token named {name!r} was revoked; its name is not given again")
            # ON CONFLICT: another server created the same name meanwhile.
            if await tx.fetchrow(Q.INSERT_TOKEN, name, role.value, hash_token(token), now) is None:
                raise Conflict(f"a token named {name!r} already exists")

        await self.db.write(run)
        return token

    async def list_tokens(self) -> list[TokenInfo]:
        async def run(tx: Tx) -> list[TokenInfo]:
            return [
                TokenInfo(name=n, role=Role(r), created=c, revoked=v)
                for n, r, c, v in await tx.fetch(Q.LIST_TOKENS)
            ]

        return await self.db.read(run, snapshot=False)

    async def revoke_token(self, name: str) -> None:
        now = self._clock()

        async def run(tx: Tx) -> None:
            if await tx.fetchrow(Q.REVOKE_TOKEN, now, name) is None:
                raise NotFound(f"no active token named {name!r}")

        await self.db.write(run)

    async def verify_token(self, token: str) -> Caller | None:
        digest = hash_token(token)
        row = await self.db.read(lambda tx: tx.fetchrow(Q.VERIFY_TOKEN, digest), snapshot=False)
        if row is None or not same_digest(row[2], digest):
            return None
        return Caller(name=row[0], role=Role(row[1]))

    async def token_mark(self) -> tuple[float, ...]:
        row = await self.db.read(lambda tx: tx.fetchrow(Q.TOKEN_MARK), snapshot=False)
        return tuple(float(v) for v in row)

    async def live_token_names(self, names: Collection[str]) -> set[str]:
        wanted = sorted(set(names))
        if not wanted:
            return set()

        async def run(tx: Tx) -> set[str]:
            return {n for (n,) in await tx.fetch(Q.LIVE_TOKEN_NAMES, wanted)}

        return await self.db.read(run, snapshot=False)


async def check_not_revoked(tx: Tx, token: str) -> None:
    """Inside a write: a revoked token claims and reports nothing more, even
    on a socket let in before the revocation (on any server)."""
    row = await tx.fetchrow(Q.TOKEN_STATE, token)
    check_revoked(token, None if row is None else row[0])


def check_revoked(token: str, revoked: float | None) -> None:
    """``check_not_revoked`` on the token's ``revoked`` column, read along
    with something else (the ``*_CHECKED`` statements: one round trip less)."""
    if revoked is not None:
        raise Unauthorized(f"the token {token!r} was revoked")
