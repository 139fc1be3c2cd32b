"""The SQLite schema's migrations, applied in order by ``schema.migrate``,
the version kept in ``PRAGMA user_version``. A migration is never edited once
released; a change is ONE new self-contained entry at the end of ``MIGRATIONS``.

Times are REAL epoch seconds; JSON objects are TEXT. The columns the claim
query and the common filters use are plain, indexed columns.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: tasks, continuations, attempts, usage, events, tokens
    """
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        name TEXT,
        command TEXT,
        state TEXT NOT NULL,
        queue TEXT NOT NULL,
        priority INTEGER NOT NULL,
        max_retry_count INTEGER NOT NULL,
        retry_count INTEGER NOT NULL DEFAULT 0,
        pending_dependency_count INTEGER NOT NULL DEFAULT 0,
        max_termination_time REAL NOT NULL,
        estimated_runtime REAL,
        requested_resources TEXT NOT NULL,
        cores REAL NOT NULL,
        memory INTEGER NOT NULL,
        gpus INTEGER NOT NULL,
        env TEXT,
        cwd TEXT,
        owner TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        worker TEXT,
        exit_status TEXT,
        exit_code INTEGER,
        time_started REAL,
        time_terminated REAL,
        progress TEXT,
        cancel_origin TEXT,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        etag TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX tasks_claim ON tasks (state, queue, priority DESC, id);
    CREATE INDEX tasks_queue ON tasks (queue, state);
    CREATE INDEX tasks_name ON tasks (name);
    CREATE INDEX tasks_owner ON tasks (owner);
    CREATE INDEX tasks_worker ON tasks (worker) WHERE worker IS NOT NULL;
    CREATE INDEX tasks_priority ON tasks (priority);
    CREATE INDEX tasks_updated ON tasks (updated);

    CREATE TABLE continuations (
        parent TEXT NOT NULL REFERENCES tasks (id),
        child TEXT NOT NULL REFERENCES tasks (id),
        position INTEGER NOT NULL,
        PRIMARY KEY (parent, child)
    ) WITHOUT ROWID;
    CREATE INDEX continuations_child ON continuations (child, parent);

    CREATE TABLE attempts (
        task_id TEXT NOT NULL REFERENCES tasks (id),
        attempt INTEGER NOT NULL,
        execution_key TEXT NOT NULL,
        worker TEXT NOT NULL,
        token TEXT NOT NULL,
        time_started REAL NOT NULL,
        time_terminated REAL,
        exit_status TEXT,
        exit_code INTEGER,
        usage TEXT,
        PRIMARY KEY (task_id, attempt)
    ) WITHOUT ROWID;
    CREATE INDEX attempts_open ON attempts (worker) WHERE time_terminated IS NULL;

    CREATE TABLE memory_usage (
        id INTEGER PRIMARY KEY,
        task_id TEXT NOT NULL REFERENCES tasks (id),
        attempt INTEGER NOT NULL,
        time REAL NOT NULL,
        resident_memory_bytes INTEGER NOT NULL
    );
    CREATE INDEX memory_usage_task ON memory_usage (task_id, time);

    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        type TEXT NOT NULL,
        task_id TEXT,
        data TEXT NOT NULL
    );

    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created REAL NOT NULL,
        revoked REAL
    );
    """,
    # 2: workers and the captured output of attempts
    """
    CREATE TABLE workers (
        name TEXT PRIMARY KEY,
        token TEXT NOT NULL,
        state TEXT NOT NULL,
        capacity TEXT NOT NULL,
        queues TEXT NOT NULL,
        host TEXT NOT NULL DEFAULT '',
        pid INTEGER NOT NULL DEFAULT 0,
        connected REAL NOT NULL,
        last_seen REAL NOT NULL,
        left REAL
    ) WITHOUT ROWID;

    CREATE TABLE logs (
        id INTEGER PRIMARY KEY,
        task_id TEXT NOT NULL REFERENCES tasks (id),
        attempt INTEGER NOT NULL,
        stream TEXT NOT NULL,
        data BLOB NOT NULL
    );
    CREATE INDEX logs_attempt ON logs (task_id, attempt, stream, id);
    ALTER TABLE attempts ADD COLUMN log_bytes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE attempts ADD COLUMN log_dropped INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: statistics kept as the data changes, so GET /stats costs the same on
    # a thousand tasks or millions (server/sqlite/stats.py reads these).
    # task_counts: tasks per (queue, state), maintained by triggers.
    # attempt_durations: attempts finished per 10-second slot, with their wait
    # (start - task created) and run (end - start) times in log buckets
    # (duration_buckets: 0, then 1 ms growing by 2^(1/8)); slots older than
    # 1,000 s before the newest finish are dropped as new ones arrive. Keyed
    # by bucket first, so that summing a window's slots per bucket is one
    # ordered pass; the slot index serves the pruning.
    """
    CREATE TABLE task_counts (
        queue TEXT NOT NULL,
        state TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (queue, state)
    ) WITHOUT ROWID;
    INSERT INTO task_counts (queue, state, n)
        SELECT queue, state, count(*) FROM tasks GROUP BY queue, state;
    CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks BEGIN
        INSERT INTO task_counts (queue, state, n) VALUES (new.queue, new.state, 1)
            ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER task_counts_update AFTER UPDATE OF state, queue ON tasks
    WHEN old.state IS NOT new.state OR old.queue IS NOT new.queue BEGIN
        UPDATE task_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
        INSERT INTO task_counts (queue, state, n) VALUES (new.queue, new.state, 1)
            ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks BEGIN
        UPDATE task_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
    END;
    CREATE INDEX tasks_available_age ON tasks (queue, created) WHERE state = 'available';

    CREATE TABLE duration_buckets (lo REAL PRIMARY KEY) WITHOUT ROWID;
    INSERT INTO duration_buckets (lo) VALUES (0.0);
    WITH RECURSIVE b(k, lo) AS (
        SELECT 0, 0.001 UNION ALL SELECT k + 1, lo * 1.0905077326652577 FROM b WHERE k < 300
    )
    INSERT INTO duration_buckets (lo) SELECT lo FROM b;
    CREATE TABLE attempt_durations (
        slot INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        bucket REAL NOT NULL,
        n INTEGER NOT NULL,
        total_s REAL NOT NULL,
        PRIMARY KEY (kind, bucket, slot)
    ) WITHOUT ROWID;
    CREATE INDEX attempt_durations_slot ON attempt_durations (slot);
    INSERT INTO attempt_durations (slot, kind, bucket, n, total_s)
        SELECT slot, kind,
            coalesce((SELECT max(lo) FROM duration_buckets WHERE lo <= v), 0.0), count(*), sum(v)
        FROM (
            SELECT CAST(a.time_terminated / 10 AS INTEGER) AS slot, 0 AS kind,
                max(a.time_started - t.created, 0.0) AS v
            FROM attempts a JOIN tasks t ON t.id = a.task_id
            WHERE a.time_terminated >= (julianday('now') - 2440587.5) * 86400.0 - 1000
            UNION ALL
            SELECT CAST(time_terminated / 10 AS INTEGER), 1,
                max(time_terminated - time_started, 0.0)
            FROM attempts
            WHERE time_terminated >= (julianday('now') - 2440587.5) * 86400.0 - 1000
        )
        GROUP BY 1, 2, 3;
    CREATE TRIGGER attempt_durations_finish AFTER UPDATE OF time_terminated ON attempts
    WHEN old.time_terminated IS NULL AND new.time_terminated IS NOT NULL BEGIN
        INSERT INTO attempt_durations (slot, kind, bucket, n, total_s)
            SELECT slot, kind,
                coalesce((SELECT max(lo) FROM duration_buckets WHERE lo <= v), 0.0), 1, v
            FROM (
                SELECT CAST(new.time_terminated / 10 AS INTEGER) AS slot, 0 AS kind,
                    max(new.time_started - coalesce(
                        (SELECT created FROM tasks WHERE id = new.task_id), new.time_started
                    ), 0.0) AS v
                UNION ALL
                SELECT CAST(new.time_terminated / 10 AS INTEGER), 1,
                    max(new.time_terminated - new.time_started, 0.0)
            )
            WHERE true
            ON CONFLICT (kind, bucket, slot) DO UPDATE SET n = n + 1,
                total_s = total_s + excluded.total_s;
        DELETE FROM attempt_durations WHERE slot < CAST(new.time_terminated / 10 AS INTEGER) - 100;
    END;
    CREATE INDEX attempts_terminated ON attempts (time_terminated);
    """,
    # 4: "my tasks in state X" (the CLI's and TUI's common filter) from one
    # index; "-priority" listings (ties by _id ascending) straight from one too.
    """
    CREATE INDEX tasks_owner_state ON tasks (owner, state);
    DROP INDEX tasks_owner;
    CREATE INDEX tasks_priority_desc ON tasks (priority DESC, id);
    DROP INDEX tasks_priority;
    """,
    # Idempotent submit (issue 11): the answer to a POST /tasks that carried an
    # Idempotency-Key, per caller, written in the transaction that made the
    # tasks; rows older than idempotency_retention_s are pruned on the next.
    """
    CREATE TABLE IF NOT EXISTS idempotency (
        caller TEXT NOT NULL,
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        status INTEGER NOT NULL,
        response TEXT NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (caller, key)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency (created);
    """,
    # 6 (issue 13): wall-time limits, begin times and the crash budget.
    # time_limit: seconds an attempt may run (NULL: no limit). not_before: epoch
    # seconds before which no claim hands the task out. abandon_count: attempts
    # that ended because the worker died or was stopped, against
    # max_abandon_count (not max_retry_count). workers.deadline: the epoch
    # second a worker started with --time-limit stops (NULL: no lifetime).
    """
    ALTER TABLE tasks ADD COLUMN time_limit REAL;
    ALTER TABLE tasks ADD COLUMN not_before REAL;
    ALTER TABLE tasks ADD COLUMN max_abandon_count INTEGER NOT NULL DEFAULT 3;
    ALTER TABLE tasks ADD COLUMN abandon_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE workers ADD COLUMN deadline REAL;
    CREATE INDEX IF NOT EXISTS tasks_not_before ON tasks (not_before)
        WHERE state = 'available' AND not_before IS NOT NULL;
    """,
    # 7: the statistics' wait time counts from when a task last became
    # available, not from its creation (time held or waiting on parents is not
    # queue wait). ``available_since`` is set by a trigger in the transaction
    # of every change that makes a task available (NULL: available since it
    # was created). The wait of an attempt is read when it ends, before the
    # task's own row changes (attempts.finish ends the attempt first).
    # Also: usage samples keep the CPU use the worker measured, and listings
    # newest first (``sort=-_created,-_id``, the CLI's and TUI's order) read
    # one index.
    """
    ALTER TABLE memory_usage ADD COLUMN cpu_percent REAL;
    CREATE INDEX IF NOT EXISTS tasks_created ON tasks (created, id);
    ALTER TABLE tasks ADD COLUMN available_since REAL;
    CREATE TRIGGER tasks_available_since AFTER UPDATE OF state ON tasks
    WHEN new.state = 'available' AND old.state IS NOT 'available' BEGIN
        UPDATE tasks SET available_since = new.updated WHERE id = new.id;
    END;
    DROP TRIGGER attempt_durations_finish;
    CREATE TRIGGER attempt_durations_finish AFTER UPDATE OF time_terminated ON attempts
    WHEN old.time_terminated IS NULL AND new.time_terminated IS NOT NULL BEGIN
        INSERT INTO attempt_durations (slot, kind, bucket, n, total_s)
            SELECT slot, kind,
                coalesce((SELECT max(lo) FROM duration_buckets WHERE lo <= v), 0.0), 1, v
            FROM (
                SELECT CAST(new.time_terminated / 10 AS INTEGER) AS slot, 0 AS kind,
                    max(new.time_started - coalesce(
                        (SELECT coalesce(available_since, created) FROM tasks
                            WHERE id = new.task_id),
                        new.time_started
                    ), 0.0) AS v
                UNION ALL
                SELECT CAST(new.time_terminated / 10 AS INTEGER), 1,
                    max(new.time_terminated - new.time_started, 0.0)
            )
            WHERE true
            ON CONFLICT (kind, bucket, slot) DO UPDATE SET n = n + 1,
                total_s = total_s + excluded.total_s;
        DELETE FROM attempt_durations WHERE slot < CAST(new.time_terminated / 10 AS INTEGER) - 100;
    END;
    """,
    # 8: a worker's identity (issue 11): the SHA-256 of the secret its current
    # process was handed in ``welcome`` (the proof a reconnect must carry);
    # revocations found cheaply by the server that watches for them.
    """
    ALTER TABLE workers ADD COLUMN secret TEXT;
    CREATE INDEX IF NOT EXISTS tokens_revoked ON tokens (revoked);
    """,
    # 9, jobs (issue 13): every POST /tasks is one job; each task names its job.
    # A job's id is its first task's id, so tasks made before this migration
    # become jobs of one. job_counts (tasks per job and state) and the span
    # columns are kept by triggers, as task_counts is, so /jobs costs the same
    # for a job of one task or of a million.
    """
    ALTER TABLE tasks ADD COLUMN job TEXT;
    UPDATE tasks SET job = id;
    CREATE INDEX tasks_job ON tasks (job, state);
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        name TEXT,
        owner TEXT NOT NULL,
        created REAL NOT NULL,
        total INTEGER NOT NULL DEFAULT 0,
        first_started REAL,
        last_ended REAL
    ) WITHOUT ROWID;
    CREATE INDEX jobs_owner ON jobs (owner, id);
    CREATE INDEX jobs_name ON jobs (name);
    INSERT INTO jobs (id, name, owner, created, total, first_started, last_ended)
        SELECT id, name, owner, created, 1, time_started, time_terminated FROM tasks;
    CREATE TABLE job_counts (
        job TEXT NOT NULL,
        state TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (job, state)
    ) WITHOUT ROWID;
    INSERT INTO job_counts (job, state, n) SELECT id, state, 1 FROM tasks;
    CREATE TRIGGER job_counts_insert AFTER INSERT ON tasks WHEN new.job IS NOT NULL BEGIN
        INSERT INTO job_counts (job, state, n) VALUES (new.job, new.state, 1)
            ON CONFLICT (job, state) DO UPDATE SET n = n + 1;
        UPDATE jobs SET total = total + 1 WHERE id = new.job;
    END;
    CREATE TRIGGER job_counts_update AFTER UPDATE OF state ON tasks
    WHEN new.job IS NOT NULL AND old.state IS NOT new.state BEGIN
        UPDATE job_counts SET n = n - 1 WHERE job = new.job AND state = old.state;
        INSERT INTO job_counts (job, state, n) VALUES (new.job, new.state, 1)
            ON CONFLICT (job, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER job_counts_delete AFTER DELETE ON tasks WHEN old.job IS NOT NULL BEGIN
        UPDATE job_counts SET n = n - 1 WHERE job = old.job AND state = old.state;
        UPDATE jobs SET total = total - 1 WHERE id = old.job;
    END;
    CREATE TRIGGER job_span_started AFTER UPDATE OF time_started ON tasks
    WHEN new.job IS NOT NULL AND new.time_started IS NOT NULL BEGIN
        UPDATE jobs SET first_started = min(coalesce(first_started, new.time_started),
            new.time_started) WHERE id = new.job;
    END;
    CREATE TRIGGER job_span_ended AFTER UPDATE OF time_terminated ON tasks
    WHEN new.job IS NOT NULL AND new.time_terminated IS NOT NULL BEGIN
        UPDATE jobs SET last_ended = max(coalesce(last_ended, new.time_terminated),
            new.time_terminated) WHERE id = new.job;
    END;
    """,
    # 10, dependency kinds (issue 13): what a task's parents' outcomes must be
    # (``run_when``), and which edges no longer hold their child back
    # (``released``: the parent succeeded, or ended for a finished/failure child).
    """
    ALTER TABLE tasks ADD COLUMN run_when TEXT NOT NULL DEFAULT 'success';
    ALTER TABLE continuations ADD COLUMN released INTEGER NOT NULL DEFAULT 0;
    UPDATE continuations SET released = 1 WHERE parent IN (
        SELECT id FROM tasks WHERE state = 'terminated' AND exit_status = 'success'
    );
    """,
    # 11, prefetch (issue 12): an attempt handed to a worker to hold in its
    # queue until a slot frees. While queued the task's time_started is NULL;
    # the worker's ``started`` frame sets it and clears the flag.
    """
    ALTER TABLE attempts ADD COLUMN queued INTEGER NOT NULL DEFAULT 0;
    """,
    # 12, bulk submit speed (issue 12): new tasks are counted per (queue,
    # state) and per (job, state) by ``tasks.create_tasks``, a few statements
    # per POST, instead of three trigger statements per inserted row (a third
    # of a bulk insert's time). Updates and deletes keep their triggers.
    """
    DROP TRIGGER IF EXISTS task_counts_insert;
    DROP TRIGGER IF EXISTS job_counts_insert;
    """,
    # 13, dispatch CPU (issue 12): the available tasks asking for (next to) no
    # core, for the claim of a worker with no core free (queries.
    # CLAIM_CANDIDATES_CORELESS). Without it that claim walked every available
    # task. Rows asking for a core or more never enter it, so it costs their
    # state changes nothing.
    """
    CREATE INDEX IF NOT EXISTS tasks_claim_coreless ON tasks (queue, priority DESC, id)
        WHERE state = 'available' AND cores <= 1e-6;
    """,
    # 14, the worker's containment (cgroup, subreaper, group), from its hello;
    # NULL for a worker that did not say (older than the field).
    """
    ALTER TABLE workers ADD COLUMN containment TEXT;
    """,
)
