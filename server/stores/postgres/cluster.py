"""Several servers on one PostgreSQL database (``server.stores.cluster``):
the ``servers`` table (one row per live server process, its heartbeat on
the database's clock, so servers on machines whose clocks differ still
agree on who is alive), ``workers.server`` (which server a worker is
connected to, set by its join), and the one statement that declares silent
workers lost, exactly once across the cluster.

Why ``declare_lost`` cannot lose a worker twice or lose a live one: it locks
the rows it marks (``FOR UPDATE SKIP LOCKED``) and rechecks them once
locked (READ COMMITTED re-evaluates the condition on a row changed since
the statement began), so of two servers sweeping at once each takes the
rows the other does not hold, and a row another server has just marked lost
or a worker has just re-joined elsewhere no longer qualifies. The attempts
are abandoned and ``worker.lost`` appended in the same transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Final

from server.domain import events as E
from server.stores.cluster import LostWorker, RemoteWorker, SessionMark, SharedStore
from server.stores.postgres import attempts
from server.stores.postgres.db import Database, Tx

DB_NOW: Final = "extract(epoch FROM clock_timestamp())::double precision"

BEAT: Final = (
    f"INSERT INTO servers (id, started, beat) VALUES ($1, {DB_NOW}, {DB_NOW}) "
    "ON CONFLICT (id) DO UPDATE SET beat = excluded.beat"
)
# Only rows whose marks changed are written (no new row version every beat).
MARK_SESSIONS: Final = (
    "UPDATE workers w SET draining = m.draining, deadline = m.deadline "
    "FROM unnest($2::text[], $3::boolean[], $4::double precision[]) "
    "AS m(name, draining, deadline) "
    "WHERE w.name = m.name AND w.server = $1 AND w.state = 'connected' "
    "AND (w.draining, w.deadline) IS DISTINCT FROM (m.draining, m.deadline)"
)
NOT_MINE: Final = (
    "SELECT n.name FROM unnest($2::text[]) AS n(name) WHERE NOT EXISTS ("
    "SELECT 1 FROM workers w WHERE w.name = n.name AND w.server = $1 "
    "AND w.state = 'connected')"
)
ATTACH: Final = "UPDATE workers SET server = $1, draining = false WHERE name = $2"
# $1 this server, $2 its silent workers, $3 the last-heard cutoff (epoch s),
# $4 how recent a live server's beat is, $5 now.
DECLARE_LOST: Final = (
    "WITH gone AS (SELECT w.name FROM workers w WHERE w.state = 'connected' AND ("
    "(w.server = $1 AND w.name = ANY($2::text[])) "
    "OR (w.last_seen < $3 AND w.server IS DISTINCT FROM $1 AND NOT EXISTS ("
    f"SELECT 1 FROM servers s WHERE s.id = w.server AND s.beat >= {DB_NOW} - $4)))"
    " ORDER BY w.name FOR UPDATE OF w SKIP LOCKED) "
    "UPDATE workers w SET state = 'lost', \"left\" = $5 FROM gone "
    "WHERE w.name = gone.name RETURNING w.name"
)
# Rows of servers long gone that no connected worker names any more.
FORGET_SERVERS: Final = (
    f"DELETE FROM servers s WHERE s.beat < {DB_NOW} - $1 AND s.id <> $2 AND NOT EXISTS ("
    "SELECT 1 FROM workers w WHERE w.server = s.id AND w.state = 'connected')"
)
ELSEWHERE: Final = (
    "SELECT w.name, w.server, w.last_seen, w.draining, w.deadline FROM workers w "
    "JOIN servers s ON s.id = w.server WHERE w.state = 'connected' AND w.server <> $1 "
    f"AND s.beat >= {DB_NOW} - $2 ORDER BY w.name"
)
RETIRE: Final = "DELETE FROM servers WHERE id = $1"


async def attach(tx: Tx, name: str, server_id: str) -> None:
    """Inside a join: the worker is connected to ``server_id`` from now on."""
    await tx.execute(ATTACH, server_id, name)


async def beat(tx: Tx, server_id: str, sessions: Mapping[str, SessionMark]) -> set[str]:
    names = sorted(sessions)
    await tx.execute(BEAT, server_id)
    if not names:
        return set()
    await tx.execute(
        MARK_SESSIONS,
        server_id,
        names,
        [sessions[n].draining for n in names],
        [sessions[n].deadline for n in names],
    )
    return {row[0] for row in await tx.fetch(NOT_MINE, server_id, names)}


async def declare_lost(
    tx: Tx,
    server_id: str,
    *,
    silent: Collection[str],
    worker_timeout_s: float,
    now: float,
    server_silence_s: float | None = None,
) -> list[LostWorker]:
    alive_s = worker_timeout_s if server_silence_s is None else server_silence_s
    rows = await tx.fetch(
        DECLARE_LOST, server_id, sorted(silent), now - worker_timeout_s, alive_s, now
    )
    lost = []
    for name in sorted(row[0] for row in rows):
        abandoned = await attempts.abandon_worker(tx, name, now)
        tx.add_events(now, [E.worker_gone(name, lost=True, abandoned=abandoned)])
        lost.append(LostWorker(name=name, abandoned=abandoned))
    await tx.execute(FORGET_SERVERS, max(3600.0, 10 * worker_timeout_s), server_id)
    return lost


def _remote(row: Any) -> RemoteWorker:
    name, server, last_seen, draining, deadline = row
    return RemoteWorker(
        name=name, server=server, last_seen=last_seen, draining=draining, deadline=deadline
    )


class PostgresCluster(SharedStore):
    """``SharedStore`` for ``PostgresStore`` (its ``db`` and ``_clock``)."""

    db: Database

    @property
    def server_id(self) -> str:
        return self.db.server_id

    async def beat(self, sessions: Mapping[str, SessionMark]) -> set[str]:
        server_id = self.server_id
        return await self.db.write(lambda tx: beat(tx, server_id, sessions))

    async def declare_lost(
        self,
        *,
        silent: Collection[str],
        worker_timeout_s: float,
        now: float,
        server_silence_s: float | None = None,
    ) -> list[LostWorker]:
        server_id = self.server_id
        return await self.db.write(
            lambda tx: declare_lost(
                tx,
                server_id,
                silent=silent,
                worker_timeout_s=worker_timeout_s,
                now=now,
                server_silence_s=server_silence_s,
            )
        )

    async def connected_elsewhere(self, *, alive_s: float) -> dict[str, RemoteWorker]:
        server_id = self.server_id

        async def run(tx: Tx) -> dict[str, RemoteWorker]:
            return {row[0]: _remote(row) for row in await tx.fetch(ELSEWHERE, server_id, alive_s)}

        return await self.db.read(run, snapshot=False)

    async def retire(self) -> None:
        server_id = self.server_id
        await self.db.write(lambda tx: tx.execute(RETIRE, server_id))
