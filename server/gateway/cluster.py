"""The gateway's part when several servers share the store
(``server.stores.cluster``, PostgreSQL): a server declares lost only the
silent workers the database still has connected to it, takes over the
workers of servers that stopped, and closes the sessions the database has
given to another server.

On a store that is not shared (SQLite, one server) none of this runs: the
gateway judges its workers' silences in memory alone, as it always has.

Each round of the gateway's monitor (``lifetime``) calls :meth:`round`:
this server's beat, with its sessions' marks (draining, lifetime), which
returns the sessions that are no longer its own; then, once this server
has been up for ``worker_timeout_s`` (so the workers of a server restarted
in its place get that long to come back, as on SQLite), the sweep that
declares lost the silent workers of servers that stopped beating.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import NamedTuple

from server.gateway.session import Session
from server.settings import Settings
from server.stores.base import Store
from server.stores.cluster import SessionMark, SharedStore

log = logging.getLogger("server.gateway")


def monitor_period_s(worker_timeout_s: float) -> float:
    """How often the gateway's monitor runs (and, on a shared store, beats)."""
    return min(1.0, worker_timeout_s / 4)


def answer_window_s(settings: Settings) -> float:
    """How long after the start of its last beat a server may still answer
    its workers. Another server takes them over once that beat is
    ``worker_timeout_s`` + one period old; a worker kills its tasks by
    ``margin / 2`` before ``worker_timeout_s`` after a frame that was
    answered (``worker/lease.py``: ``margin = max(heartbeat period, 20 % of
    worker_timeout_s)``). So answers within ``period + margin / 2`` of the
    beat keep every lease ending before the takeover."""
    timeout = settings.worker_timeout_s
    heartbeat = min(settings.heartbeat_interval_s, timeout / 4)
    margin = max(heartbeat, 0.2 * timeout)
    return monitor_period_s(timeout) + margin / 2


# A worker of another live server counts as connected (a second process is
# refused, 4409) while that server heard it within this many heartbeat
# intervals (it records them once per interval); after that it counts as
# cut off (1013 while it holds attempts), as a dropped worker does on SQLite.
HEARD_INTERVALS = 3


class Presence(NamedTuple):
    """Where the database has a worker, for the admission of a connection."""

    elsewhere: bool  # connected to another live server, which heard it lately
    stranded: bool  # recorded as connected, but not heard lately (not lost yet)


class ClusterLiveness:
    def __init__(self, store: Store, settings: Settings) -> None:
        assert isinstance(store, SharedStore)
        self._store: SharedStore = store
        self._workers = store  # its ``Store`` side
        self._timeout_s = settings.worker_timeout_s
        self._heard_s = HEARD_INTERVALS * settings.heartbeat_interval_s
        # A server is taken for stopped once its beat is one monitor period
        # older than worker_timeout_s. Why the period: its workers' leases
        # (worker/lease.py) count on no attempt being abandoned before
        # ``s + worker_timeout_s`` for a frame sent at ``s`` and answered; the
        # server may have answered up to a period after its last beat.
        self._server_silence_s = self._timeout_s + monitor_period_s(self._timeout_s)
        # For the same reason this server answers its workers (acks, reports'
        # answers, any frame) only within this long of the start of its last
        # beat that the database took: a server cut off from the database
        # stops renewing its workers' leases before the others take them over.
        self._answer_window_s = answer_window_s(settings)
        self._beat_ok = time.monotonic()  # the first beat is in start(), before any session
        self._beaten = asyncio.Event()
        self._started = time.monotonic()

    async def record_loss(self, name: str) -> list[str] | None:
        """Declare this server's silent worker ``name`` lost: the tasks of its
        abandoned attempts, or None when the database no longer has it
        connected here (it joined another server, or another server already
        declared it lost): then there is nothing to record."""
        lost = await self._store.declare_lost(
            silent=[name], worker_timeout_s=self._timeout_s, now=time.time()
        )
        return lost[0].abandoned if lost else None

    async def round(self, sessions: Mapping[str, Session]) -> set[str]:
        """Beat, then take over the silent workers of stopped servers; returns
        the names of ``sessions`` the database no longer has connected here."""
        wall = time.time() - time.monotonic()
        marks = {
            name: SessionMark(
                draining=session.draining,
                deadline=None if session.deadline is None else wall + session.deadline,
            )
            for name, session in sessions.items()
        }
        started = time.monotonic()
        gone = await self._store.beat(marks)
        self._beat_ok = started
        self._beaten.set()
        if time.monotonic() - self._started >= self._timeout_s:
            for lost in await self._store.declare_lost(
                silent=(),
                worker_timeout_s=self._timeout_s,
                now=time.time(),
                server_silence_s=self._server_silence_s,
            ):
                log.warning(
                    "worker %s (of a server that stopped) lost; attempts abandoned: %s",
                    lost.name,
                    lost.abandoned,
                )
        return gone

    async def on_record(self) -> None:
        """Return once this server's last beat is recent enough to answer a
        worker (``Session.gate``); at once when all is well."""
        while time.monotonic() - self._beat_ok > self._answer_window_s:
            self._beaten.clear()
            await self._beaten.wait()

    async def presence(self, name: str) -> Presence:
        """Whether another live server holds ``name`` and heard it lately, or
        it is recorded as connected without that (its server stopped or lost
        touch with it; it may come back)."""
        remote = (await self._store.connected_elsewhere(alive_s=self._timeout_s)).get(name)
        if remote is not None and time.time() - remote.last_seen <= self._heard_s:
            return Presence(elsewhere=True, stranded=False)
        found = await self._workers.list_workers(name)
        return Presence(elsewhere=False, stranded=bool(found) and found[0]["state"] == "connected")

    async def retire(self) -> None:
        await self._store.retire()
