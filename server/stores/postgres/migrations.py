"""The PostgreSQL schema's migrations, applied in order on open by
``migrate``; the version is the row count of ``schema_version`` (one row per
migration applied, with when). A migration is never edited once released; a
change is ONE new entry at the end of ``MIGRATIONS``.

Times are epoch seconds (``double precision``), JSON objects ``jsonb``. The
columns the claim and the common filters use are plain, indexed columns.
Text columns compare byte-wise (``COLLATE "C"``) whatever the database's
locale, as SQLite and the query language's ``matches`` do (sorts, ``$lt``);
sorts put NULL first ascending, as SQLite does, and the indexes that serve
sorts are built in that order (``NULLS FIRST``, or ``NULLS LAST`` descending).

Unlike the SQLite schema there are no counter tables kept by triggers
(``task_counts``, ``job_counts``, ``attempt_durations``): with several
servers writing at once such a row is a lock every transaction that changes
a task's state would queue on. Statistics and job counts are read from the
indexes instead (``stats.py``, ``jobs.py``). The one trigger is per row
(``available_since``), so it adds no shared lock.
"""

from __future__ import annotations

import time
from typing import Any

from banyan.errors import BanyanError

# Taken (per transaction) while migrating, so two servers starting on one new
# database do not both create the schema. Another key serialises event writes
# (``db.EVENTS_LOCK``).
MIGRATION_LOCK = 0x62616E79616E01

MIGRATIONS: tuple[str, ...] = (
    # 1: the whole schema of Banyan 0.1 (SQLite migrations 1-11 in one)
    """
    CREATE TABLE tasks (
        id text COLLATE "C" PRIMARY KEY,
        name text COLLATE "C",
        command text COLLATE "C",
        state text COLLATE "C" NOT NULL,
        queue text COLLATE "C" NOT NULL,
        priority bigint NOT NULL,
        max_retry_count bigint NOT NULL,
        retry_count bigint NOT NULL DEFAULT 0,
        pending_dependency_count bigint NOT NULL DEFAULT 0,
        max_termination_time double precision NOT NULL,
        estimated_runtime double precision,
        requested_resources jsonb NOT NULL,
        cores double precision NOT NULL,
        memory bigint NOT NULL,
        gpus bigint NOT NULL,
        env jsonb,
        cwd text COLLATE "C",
        owner text COLLATE "C" NOT NULL,
        attempt bigint NOT NULL DEFAULT 0,
        worker text COLLATE "C",
        exit_status text COLLATE "C",
        exit_code bigint,
        time_started double precision,
        time_terminated double precision,
        progress jsonb,
        cancel_origin text COLLATE "C",
        created double precision NOT NULL,
        updated double precision NOT NULL,
        etag text COLLATE "C" NOT NULL,
        time_limit double precision,
        not_before double precision,
        max_abandon_count bigint NOT NULL DEFAULT 3,
        abandon_count bigint NOT NULL DEFAULT 0,
        available_since double precision,
        job text COLLATE "C",
        run_when text COLLATE "C" NOT NULL DEFAULT 'success'
    );
    CREATE INDEX tasks_claim ON tasks (queue, priority DESC, id) WHERE state = 'available';
    CREATE INDEX tasks_state ON tasks (state, queue);
    CREATE INDEX tasks_name ON tasks (name NULLS FIRST);
    CREATE INDEX tasks_owner_state ON tasks (owner, state);
    CREATE INDEX tasks_worker ON tasks (worker) WHERE worker IS NOT NULL;
    CREATE INDEX tasks_priority_desc ON tasks (priority DESC NULLS LAST, id);
    CREATE INDEX tasks_updated ON tasks (updated NULLS FIRST);
    CREATE INDEX tasks_created ON tasks (created NULLS FIRST, id);
    CREATE INDEX tasks_available_age ON tasks (queue, created) WHERE state = 'available';
    CREATE INDEX tasks_not_before ON tasks (not_before)
        WHERE state = 'available' AND not_before IS NOT NULL;
    CREATE INDEX tasks_job ON tasks (job, state);

    CREATE FUNCTION banyan_available_since() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.state = 'available' AND OLD.state IS DISTINCT FROM 'available' THEN
            NEW.available_since := NEW.updated;
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER tasks_available_since BEFORE UPDATE OF state ON tasks
        FOR EACH ROW EXECUTE FUNCTION banyan_available_since();

    CREATE TABLE continuations (
        parent text COLLATE "C" NOT NULL REFERENCES tasks (id),
        child text COLLATE "C" NOT NULL REFERENCES tasks (id),
        position bigint NOT NULL,
        released boolean NOT NULL DEFAULT false,
        PRIMARY KEY (parent, child)
    );
    CREATE INDEX continuations_child ON continuations (child, parent);

    CREATE TABLE attempts (
        task_id text COLLATE "C" NOT NULL REFERENCES tasks (id),
        attempt bigint NOT NULL,
        execution_key text COLLATE "C" NOT NULL,
        worker text COLLATE "C" NOT NULL,
        token text COLLATE "C" NOT NULL,
        time_started double precision NOT NULL,
        time_terminated double precision,
        exit_status text COLLATE "C",
        exit_code bigint,
        usage jsonb,
        log_bytes bigint NOT NULL DEFAULT 0,
        log_dropped bigint NOT NULL DEFAULT 0,
        queued boolean NOT NULL DEFAULT false,
        available_from double precision,
        PRIMARY KEY (task_id, attempt)
    );
    CREATE INDEX attempts_open ON attempts (worker) WHERE time_terminated IS NULL;
    CREATE INDEX attempts_terminated ON attempts (time_terminated);

    CREATE TABLE memory_usage (
        id bigserial PRIMARY KEY,
        task_id text COLLATE "C" NOT NULL REFERENCES tasks (id),
        attempt bigint NOT NULL,
        time double precision NOT NULL,
        resident_memory_bytes bigint NOT NULL,
        cpu_percent double precision
    );
    CREATE INDEX memory_usage_task ON memory_usage (task_id, time);

    CREATE TABLE events (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        time double precision NOT NULL,
        type text COLLATE "C" NOT NULL,
        task_id text COLLATE "C",
        data text COLLATE "C" NOT NULL
    );

    CREATE TABLE tokens (
        id bigserial PRIMARY KEY,
        name text COLLATE "C" NOT NULL UNIQUE,
        role text COLLATE "C" NOT NULL,
        hash text COLLATE "C" NOT NULL UNIQUE,
        created double precision NOT NULL,
        revoked double precision
    );
    CREATE INDEX tokens_revoked ON tokens (revoked);

    CREATE TABLE workers (
        name text COLLATE "C" PRIMARY KEY,
        token text COLLATE "C" NOT NULL,
        state text COLLATE "C" NOT NULL,
        capacity jsonb NOT NULL,
        queues jsonb NOT NULL,
        host text COLLATE "C" NOT NULL DEFAULT '',
        pid bigint NOT NULL DEFAULT 0,
        connected double precision NOT NULL,
        last_seen double precision NOT NULL,
        "left" double precision,
        deadline double precision,
        secret text COLLATE "C"
    );

    CREATE TABLE logs (
        id bigserial PRIMARY KEY,
        task_id text COLLATE "C" NOT NULL REFERENCES tasks (id),
        attempt bigint NOT NULL,
        stream text COLLATE "C" NOT NULL,
        data bytea NOT NULL
    );
    CREATE INDEX logs_attempt ON logs (task_id, attempt, stream, id);

    CREATE TABLE idempotency (
        caller text COLLATE "C" NOT NULL,
        key text COLLATE "C" NOT NULL,
        request_hash text COLLATE "C" NOT NULL,
        status bigint NOT NULL,
        response text COLLATE "C" NOT NULL,
        created double precision NOT NULL,
        PRIMARY KEY (caller, key)
    );
    CREATE INDEX idempotency_created ON idempotency (created);

    CREATE TABLE jobs (
        id text COLLATE "C" PRIMARY KEY,
        name text COLLATE "C",
        owner text COLLATE "C" NOT NULL,
        created double precision NOT NULL
    );
    CREATE INDEX jobs_owner ON jobs (owner, id);
    CREATE INDEX jobs_name ON jobs (name);
    """,
    # 2 (issue 14, several servers): the live servers (``cluster.py``: a beat
    # on the database's clock), the server each connected worker is on, and
    # what only that server knows of it (draining; ``deadline`` exists).
    """
    CREATE TABLE IF NOT EXISTS servers (
        id text PRIMARY KEY,
        started double precision NOT NULL,
        beat double precision NOT NULL
    );
    ALTER TABLE workers ADD COLUMN IF NOT EXISTS server text;
    ALTER TABLE workers ADD COLUMN IF NOT EXISTS draining boolean NOT NULL DEFAULT false;
    CREATE INDEX IF NOT EXISTS workers_server ON workers (server) WHERE state = 'connected';
    """,
    # 3 (issue 12, dispatch CPU): the available tasks asking for (next to) no
    # core, for the claim of a worker with no core free
    # (queries.CLAIM_CANDIDATES_CORELESS); without it that claim walked every
    # available task of the queue. Rows asking for more never enter it.
    """
    CREATE INDEX IF NOT EXISTS tasks_claim_coreless ON tasks (queue, priority DESC, id)
        WHERE state = 'available' AND cores <= 1e-6;
    """,
    # 4: the worker's containment (cgroup, subreaper, group), from its hello;
    # NULL for a worker that did not say (older than the field).
    """
    ALTER TABLE workers ADD COLUMN IF NOT EXISTS containment text;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(BanyanError):
    """The database was migrated by a newer Banyan: refuse it rather than guess."""


async def migrate(conn: Any) -> int:
    """Bring the database to ``SCHEMA_VERSION`` (an asyncpg connection, outside
    a transaction); returns the version found. All of it is one transaction
    (PostgreSQL's DDL is transactional) under an advisory lock, so concurrent
    starts are safe and a second run changes nothing."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version bigint PRIMARY KEY, applied double precision NOT NULL)"
        )
        found = int(await conn.fetchval("SELECT count(*) FROM schema_version"))
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"database schema version {found} is newer than this Banyan "
                f"({SCHEMA_VERSION}); upgrade Banyan"
            )
        for version in range(found, SCHEMA_VERSION):
            await conn.execute(MIGRATIONS[version])
            await conn.execute(
                "INSERT INTO schema_version (version, applied) VALUES ($1, $2)",
                version + 1,
                time.time(),
            )
    return found
