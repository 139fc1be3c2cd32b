"""The PostgreSQL backend: ``banyan-server --db postgresql://user@host:5432/db``.

Several servers may share one database and serve one queue. What makes that
sound, and where it lives:

- **Rules**: the same ``server.domain`` functions as SQLite; this package
  only loads and saves (``tasks``, ``graph``, ``attempts``, ``workers``,
  ``reads``), with its SQL named in ``queries`` and its schema in
  ``migrations`` (applied on open, version in ``schema_version``, under an
  advisory lock, so servers starting together migrate once).
- **Concurrency**: READ COMMITTED transactions; a row read before it is
  changed is read ``FOR UPDATE``, so writers of one task take turns; a claim
  locks the tasks it takes ``FOR UPDATE SKIP LOCKED`` (its scan locks
  nothing), so a task is never claimed twice and claimers pass each other
  by. Each server commits its queued writes together (group commit, as on
  SQLite); a write refused before it changed anything fails alone, one that
  fails after a change makes the batch run again with a savepoint per
  write, and one that meets a deadlock with another server is undone and
  runs again in the next batch (``db``).
- **Round trips**: each statement is one, so the hot paths are few, wide
  statements (``bench/pg_roundtrips.py`` counts them): a single create is one
  (the job and its tasks, as arrays; the simple creates of one batch share
  it, ``Tx.defer``), a claim two (the candidates with the
  token's state; the attempts started, for all chosen tasks; two more for a
  race lost to another server's claim), a report two
  (the current attempt with the token's state, locked; the attempt's end,
  the task's, and the task's document), a start or a progress report two;
  per batch, BEGIN, the events (lock, NOTIFY and insert in one statement)
  and COMMIT. The rules stay in ``server.domain``: the store loads, asks,
  saves.
- **Event order** (the outbox trap): every transaction that appends events
  takes ``pg_advisory_xact_lock(EVENTS_LOCK)`` just before inserting them and
  holds it to its commit, so ``seq`` order is commit order across servers: a
  reader that has seen seq N will never later find a smaller seq committed.
  The price: event-writing commits are serialised (one batch at a time, each
  with its WAL flush), which bounds the batches per second of the whole
  cluster; the changes themselves run before the lock, concurrently.
- **Commits of other servers**: each event-writing commit sends a ``NOTIFY``
  on ``banyan_commit``; every server LISTENs on one dedicated connection and
  runs its commit listeners (``add_commit_listener``) for other servers'
  commits as for its own. So the event hub (the feed), ``work_available``
  and ``cancel`` reach workers and subscribers whichever server they are
  connected to.

**Driver**: asyncpg. ``bench/pg_driver.py`` (alternating repetitions, one
connection each, same SQL) measured it at 1.6-2.3x (medians) psycopg 3's async
throughput on this store's commonest operations (single-row insert in a
transaction, a ``SKIP LOCKED`` claim, a one-row read); both were fast enough
for correctness, asyncpg won on speed, which the issue asks for. It is the
``postgres`` extra (``pip install banyan[postgres]``).

**Pool**: ``pool_size`` (a server setting) connections per server, plus one
listening connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from banyan.errors import InvalidInput

if TYPE_CHECKING:
    from server.settings import Settings
    from server.stores.base import Store


def from_settings(location: str, settings: Settings) -> Store:
    """The store for ``location`` (the URL without ``postgresql://``);
    ``InvalidInput`` saying how to install the driver when it is missing."""
    try:
        from server.stores.postgres.store import PostgresStore
    except ImportError as exc:
        if exc.name is None or exc.name.partition(".")[0] != "asyncpg":
            raise
        raise InvalidInput(
            "db: the PostgreSQL store needs the asyncpg driver: "
            "pip install 'banyan[postgres]' (or pip install asyncpg)",
            issues={"db": "asyncpg is not installed"},
        ) from None

    return PostgresStore(
        f"postgresql://{location}",
        pool_size=settings.pool_size,
        batch_max_ops=settings.commit_batch_max_ops,
        require_if_match=settings.require_if_match,
    )
