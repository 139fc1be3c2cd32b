"""API tokens inside a transaction: only their hashes are stored; a revoked
token's name is never given again (tasks and history name it)."""

from __future__ import annotations

import sqlite3

from banyan.errors import Conflict, NotFound
from banyan.tokens import Caller, Role, hash_token, same_digest
from server.domain.tokens import NAME_MAX as NAME_MAX  # re-exported
from server.domain.tokens import check_name as check_name
from server.stores.base import TokenInfo
from server.stores.sqlite import queries as Q


def create(conn: sqlite3.Connection, name: str, role: Role, token: str, now: float) -> None:
    found = conn.execute(Q.TOKEN_REVOKED, (name,)).fetchone()
    if found is not None and found[0] is None:
        raise Conflict(f"a token named {name!r} already exists")
    if found is not None:  # tasks and history name it: never a new holder
        raise Conflict(f"a token named {name!r} was revoked; its name is not given again")
    conn.execute(Q.INSERT_TOKEN, (name, role.value, hash_token(token), now))


def list_all(conn: sqlite3.Connection) -> list[TokenInfo]:
    rows = conn.execute(Q.LIST_TOKENS)
    return [TokenInfo(name=n, role=Role(r), created=c, revoked=v) for n, r, c, v in rows]


def revoke(conn: sqlite3.Connection, name: str, now: float) -> None:
    if conn.execute(Q.REVOKE_TOKEN, (now, name)).fetchone() is None:
        raise NotFound(f"no active token named {name!r}")


def verify(conn: sqlite3.Connection, digest: str) -> Caller | None:
    row = conn.execute(Q.VERIFY_TOKEN, (digest,)).fetchone()
    if row is None or not same_digest(row[2], digest):
        return None
    return Caller(name=row[0], role=Role(row[1]))
