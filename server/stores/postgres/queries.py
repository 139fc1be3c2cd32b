"""The PostgreSQL backend's SQL statements, named in one place: the modules
beside it run these by name. Lists of ids are one ``text[]`` parameter
(``= ANY($1)``).

Concurrency: transactions run at READ COMMITTED. A row a write reads before
it changes it is read ``FOR UPDATE`` (the statements marked "locks"), so two
servers changing one task take turns and each sees the other's result; a
claim locks the tasks it takes ``FOR UPDATE SKIP LOCKED`` (START_ATTEMPTS),
so concurrent claims pass each other by instead of queueing, and never hand
out one task twice.
"""

from __future__ import annotations

from typing import Final

from server.stores.sqlite.queries import TASK_COLUMNS as TASK_COLUMNS  # one column order

_ETAG: Final = "substr(md5(random()::text || clock_timestamp()::text), 1, 20)"

# --- claims ------------------------------------------------------------------------
# Formatted with ``server.domain.claims.ORDER``. Parameters: queues, max cores,
# max memory, max gpus, now, remaining lifetime or NULL, how many to look at,
# task ids to pass over (another transaction took them since an earlier scan).
# One ordered scan of the claim index per queue (a LATERAL subquery: with
# ``queue = ANY(array)`` PostgreSQL 15 cannot read that index in order, and
# would read and sort every available task of the queues on every claim),
# then the best of them. The scan locks nothing: START_ATTEMPTS locks only
# the tasks the policy chose. (Locking the whole window here, eight times
# the claim limit, kept every other server's claim away from tasks this one
# would not take until its commit: their workers got an empty answer and
# waited for a push that never came, with tasks available.)
_CLAIM_COLUMNS: Final = (
    "id, cores, memory, gpus, requested_resources::text, name, queue, command, "
    "env::text, cwd, max_termination_time, time_limit, etag"
)
CLAIM_CANDIDATES: Final = (
    f"SELECT {_CLAIM_COLUMNS} FROM unnest($1::text[]) AS q(wanted) CROSS JOIN LATERAL ("
    f"SELECT {_CLAIM_COLUMNS}, priority FROM tasks "
    "WHERE state = 'available' AND queue = q.wanted "
    "AND cores <= $2 AND memory <= $3 AND gpus <= $4 "
    "AND (not_before IS NULL OR not_before <= $5) "
    "AND (time_limit IS NULL OR time_limit <= coalesce($6::float8, time_limit)) "
    "AND id <> ALL($8::text[]) "
    "ORDER BY {order} LIMIT $7) AS c "
    "ORDER BY {order} LIMIT $7"
)
# The same with, as a first column, whether the claiming token was revoked
# (NULL: it lives), in one round trip; parameter 9 is the token's name. (No
# rows: the token is checked on its own, TOKEN_STATE.)
CLAIM_CANDIDATES_CHECKED: Final = CLAIM_CANDIDATES.replace(
    "SELECT ", "SELECT (SELECT revoked FROM tokens WHERE name = $9), ", 1
)
# A claim whose free share has no core left (a full worker refilling its
# prefetch queue) can only get tasks asking for (next to) no core: those are in
# the small partial index ``tasks_claim_coreless`` (migration 3), so the scan
# does not walk every available task of the queue to find none. Used when the
# cores bound is at most ``CORELESS_CORES``; the query repeats the index's
# condition, which is what lets the planner use it.
CORELESS_CORES: Final = 1e-6
_CORELESS: Final = ("AND cores <= $2", "AND cores <= 1e-6 AND cores <= $2")
CLAIM_CANDIDATES_CORELESS: Final = CLAIM_CANDIDATES.replace(*_CORELESS)
CLAIM_CANDIDATES_CORELESS_CHECKED: Final = CLAIM_CANDIDATES_CHECKED.replace(*_CORELESS)
# Parameters: queues, the task's priority, its id, how many (pending reasons).
TASKS_AHEAD: Final = (
    "SELECT id, cores, memory, gpus, requested_resources::text FROM tasks "
    "WHERE state = 'available' AND queue = ANY($1::text[]) "
    "AND (priority > $2 OR (priority = $2 AND id < $3)) ORDER BY {order} LIMIT $4"
)
NEXT_BEGIN: Final = (
    "SELECT min(not_before) FROM tasks WHERE state = 'available' AND not_before > $1"
)
# A task's attempt starts (or is queued): the task's row and the attempt's,
# for several tasks in one round trip. Only the tasks still available and
# unchanged since the scan read them (same etag) that no other transaction
# holds are taken: each is locked ``FOR UPDATE SKIP LOCKED`` (another
# server's claim of it is passed by, not waited for); the ids returned are
# the ones taken.
# Parameters: worker, time started (NULL for a queued attempt), now, task ids,
# token, queued, execution keys (one per task id, in order), the etags read.
START_ATTEMPTS: Final = (
    "WITH l AS (SELECT tasks.id FROM tasks JOIN unnest($4::text[], $8::text[]) AS s(id, etag) "
    "ON s.id = tasks.id AND s.etag = tasks.etag WHERE tasks.state = 'available' "
    "FOR UPDATE OF tasks SKIP LOCKED), "
    "t AS (UPDATE tasks SET state = 'running', attempt = attempt + 1, worker = $1, "
    "exit_status = NULL, exit_code = NULL, time_started = $2, time_terminated = NULL, "
    f"progress = NULL, updated = $3, etag = {_ETAG} FROM l WHERE tasks.id = l.id "
    "RETURNING tasks.id, tasks.attempt, "
    "coalesce(tasks.available_since, tasks.created) AS available_from), "
    "a AS (INSERT INTO attempts (task_id, attempt, execution_key, worker, token, "
    "time_started, queued, available_from) SELECT t.id, t.attempt, k.key, $1, $5, $3, $6, "
    "t.available_from FROM t JOIN unnest($4::text[], $7::text[]) AS k(id, key) ON k.id = t.id) "
    "SELECT id, attempt FROM t"
)

# --- state changes (server.domain.transitions.Kind → its statement) -------------
# Each with the change's fields it takes, in order ($1, $2, ...).
SET_STATE: Final = {
    "available": (
        f"UPDATE tasks SET state = 'available', updated = $2, etag = {_ETAG} WHERE id = $1",
        ("id", "now"),
    ),
    "group_succeeded": (
        "UPDATE tasks SET state = 'terminated', exit_status = $3, exit_code = NULL, "
        f"time_started = $2, time_terminated = $2, updated = $2, etag = {_ETAG} WHERE id = $1",
        ("id", "now", "exit_status"),
    ),
    "cancelled": (
        "UPDATE tasks SET state = 'cancelled', cancel_origin = $3, updated = $2, "
        f"etag = {_ETAG} WHERE id = $1",
        ("id", "now", "origin"),
    ),
    "stopping": (
        "UPDATE tasks SET state = 'pending_cancellation', cancel_origin = $3, updated = $2, "
        f"etag = {_ETAG} WHERE id = $1",
        ("id", "now", "origin"),
    ),
    "revived": (
        "UPDATE tasks SET state = 'inactive', cancel_origin = NULL, updated = $2, "
        f"etag = {_ETAG} WHERE id = $1",
        ("id", "now"),
    ),
    "skipped": (
        "UPDATE tasks SET state = 'cancelled', cancel_origin = NULL, exit_status = $3, "
        f"exit_code = NULL, time_terminated = $2, updated = $2, etag = {_ETAG} WHERE id = $1",
        ("id", "now", "exit_status"),
    ),
}

READY_ROW: Final = "SELECT command, state, name, queue FROM tasks WHERE id = $1 FOR UPDATE"  # locks
USER_CHANGE_ROW: Final = (
    "SELECT state, pending_dependency_count, exit_status, name, queue FROM tasks WHERE id = $1"
)
OPEN_EDGES: Final = (  # locks the children
    "SELECT t.id, t.state, t.name, t.queue, t.run_when FROM continuations c "
    "JOIN tasks t ON t.id = c.child WHERE c.parent = $1 AND NOT c.released "
    "ORDER BY c.position FOR UPDATE OF t"
)
RELEASE_EDGE: Final = "UPDATE continuations SET released = true WHERE parent = $1 AND child = $2"
WAIT_ON_ONE_LESS_RETURNING: Final = (
    "UPDATE tasks SET pending_dependency_count = pending_dependency_count - 1, "
    f"updated = $1, etag = {_ETAG} WHERE id = $2 RETURNING pending_dependency_count"
)
A_PARENT_FAILED: Final = (
    "SELECT 1 FROM continuations c JOIN tasks p ON p.id = c.parent WHERE c.child = $1 AND ("
    "(p.state = 'terminated' AND p.exit_status IS DISTINCT FROM 'success') OR "
    "(p.state = 'cancelled' AND p.exit_status IS DISTINCT FROM $2)) LIMIT 1"
)
_DESCENDANTS: Final = """
    WITH RECURSIVE d(id) AS (
        SELECT child FROM continuations WHERE parent = $1
        UNION
        SELECT c.child FROM continuations c JOIN d ON c.parent = d.id
    )
"""
REVIVABLE: Final = (
    _DESCENDANTS + "SELECT id, name, queue, pending_dependency_count FROM tasks "
    "WHERE id IN (SELECT id FROM d) AND state = 'cancelled' AND cancel_origin = $1 "
    "AND attempt = 0 ORDER BY id FOR UPDATE"
)
REACHES: Final = _DESCENDANTS + "SELECT 1 FROM d WHERE id = $2 LIMIT 1"
RESET_RETRIES: Final = "UPDATE tasks SET retry_count = 0, cancel_origin = NULL WHERE id = $1"
RESET_ABANDONS: Final = "UPDATE tasks SET abandon_count = 0 WHERE id = $1"

# --- attempts ------------------------------------------------------------------------
CURRENT_ATTEMPT: Final = (  # locks the task
    "SELECT t.state, t.attempt, t.retry_count, t.max_retry_count, t.name, t.queue, "
    "a.execution_key, a.token, a.time_terminated, a.exit_status, a.worker, a.queued, "
    "t.abandon_count, t.max_abandon_count "
    "FROM tasks t LEFT JOIN attempts a ON a.task_id = t.id AND a.attempt = t.attempt "
    "WHERE t.id = $1 FOR UPDATE OF t"
)
# The same with, as a first column, whether a token was revoked (NULL: it
# lives), in one round trip; parameter 2 is the token's name.
CURRENT_ATTEMPT_CHECKED: Final = CURRENT_ATTEMPT.replace(
    "SELECT ", "SELECT (SELECT revoked FROM tokens WHERE name = $2), ", 1
)
ATTEMPT_OF_KEY: Final = "SELECT attempt FROM attempts WHERE task_id = $1 AND execution_key = $2"
END_ATTEMPT: Final = (
    "UPDATE attempts SET time_terminated = $1, exit_status = $2, exit_code = $3, "
    "usage = $4::jsonb WHERE task_id = $5 AND attempt = $6"
)
END_TASK_ATTEMPT: Final = (
    "UPDATE tasks SET state = $1, exit_status = $2, exit_code = $3, time_terminated = $4, "
    f"retry_count = retry_count + $5, updated = $6, etag = {_ETAG}, "
    "abandon_count = abandon_count + $7 WHERE id = $8"
)
# A queued attempt's process started: the attempt's row and the task's.
# Parameters: time started, now, task id, attempt.
MARK_STARTED: Final = (
    "WITH a AS (UPDATE attempts SET queued = false, time_started = $1 "
    "WHERE task_id = $3 AND attempt = $4) "
    f"UPDATE tasks SET time_started = $1, updated = $2, etag = {_ETAG} WHERE id = $3"
)
SET_PROGRESS: Final = "UPDATE tasks SET progress = $1::jsonb, updated = $2 WHERE id = $3"
OPEN_ATTEMPTS: Final = (
    "SELECT a.task_id, a.execution_key, a.queued FROM attempts a JOIN tasks t "
    "ON t.id = a.task_id AND t.attempt = a.attempt "
    "WHERE a.worker = $1 AND a.time_terminated IS NULL ORDER BY a.task_id"
)
USAGE_ROW: Final = (
    "SELECT t.state, t.attempt, a.token FROM tasks t LEFT JOIN attempts a "
    "ON a.task_id = t.id AND a.attempt = t.attempt WHERE t.id = $1"
)
INSERT_USAGE: Final = (
    "INSERT INTO memory_usage (task_id, attempt, time, resident_memory_bytes, cpu_percent) "
    "VALUES ($1, $2, $3, $4, $5)"
)

# --- the continuation graph ----------------------------------------------------------
EDGE_ENDS: Final = (  # locks both ends, in id order
    "SELECT id, state, owner, exit_status FROM tasks WHERE id = ANY($1::text[]) "
    "ORDER BY id FOR UPDATE"
)
EDGE_EXISTS: Final = "SELECT 1 FROM continuations WHERE parent = $1 AND child = $2"
INSERT_EDGE: Final = (
    "INSERT INTO continuations (parent, child, position) VALUES ($1, $2, "
    "(SELECT coalesce(max(position), -1) + 1 FROM continuations WHERE parent = $1))"
)
DELETE_EDGE: Final = "DELETE FROM continuations WHERE parent = $1 AND child = $2 RETURNING released"
WAIT_ON_ONE_MORE: Final = (
    "UPDATE tasks SET pending_dependency_count = pending_dependency_count + 1, "
    f"state = 'inactive', updated = $1, etag = {_ETAG} WHERE id = $2 RETURNING name, queue"
)
WAIT_ON_ONE_LESS: Final = (
    "UPDATE tasks SET pending_dependency_count = pending_dependency_count - 1, "
    f"updated = $1, etag = {_ETAG} WHERE id = $2"
)

# --- tasks: create, edit, read ---------------------------------------------------------
TASK_BY_ID: Final = (
    TASK_COLUMNS.replace("requested_resources", "requested_resources::text")
    .replace("env,", "env::text,")
    .replace("progress,", "progress::text,")
)
# One task with its continuations (in order) as a last column: one round trip.
GET_TASK: Final = (
    f"SELECT {TASK_BY_ID}, ARRAY(SELECT c.child FROM continuations c "
    "WHERE c.parent = tasks.id ORDER BY c.position) FROM tasks WHERE id = $1"
)
# END_ATTEMPT and END_TASK_ATTEMPT in one round trip (a worker's report), returning the task's
# document row (as GET_TASK) and whether it has continuations still to settle.
# Parameters: now, exit status, exit code, usage, task id, attempt, new
# state, retries to add, abandons to add.
END_ATTEMPT_AND_TASK: Final = (
    "WITH a AS (UPDATE attempts SET time_terminated = $1, exit_status = $2, exit_code = $3, "
    "usage = $4::jsonb WHERE task_id = $5 AND attempt = $6) "
    "UPDATE tasks SET state = $7, exit_status = $2, exit_code = $3, time_terminated = $1, "
    f"retry_count = retry_count + $8, updated = $1, etag = {_ETAG}, "
    f"abandon_count = abandon_count + $9 WHERE id = $5 RETURNING {TASK_BY_ID}, "
    "ARRAY(SELECT c.child FROM continuations c WHERE c.parent = tasks.id ORDER BY c.position), "
    "EXISTS (SELECT 1 FROM continuations c WHERE c.parent = tasks.id AND NOT c.released)"
)
TASK_EXISTS: Final = "SELECT 1 FROM tasks WHERE id = $1"
_INSERT_TASKS: Final = (
    "INSERT INTO tasks (id, name, command, state, queue, priority, max_retry_count, "
    "pending_dependency_count, max_termination_time, estimated_runtime, requested_resources, "
    "cores, memory, gpus, env, cwd, owner, created, updated, etag, job, run_when, "
    "time_limit, not_before, max_abandon_count)"
)
# Jobs and their tasks in one round trip (of one create, or of all the
# simple creates of a group commit: ``Tx.defer``), one array per column: the
# tasks' in _INSERT_TASKS's order ($1-$25), then the jobs' id, name, owner
# and creation time ($26-$29).
_TASK_ARRAYS: Final = (
    "$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[], "
    "$8::int8[], $9::float8[], $10::float8[], $11::text[], $12::float8[], $13::int8[], "
    "$14::int8[], $15::text[], $16::text[], $17::text[], $18::float8[], $19::float8[], "
    "$20::text[], $21::text[], $22::text[], $23::float8[], $24::float8[], $25::int8[]"
)
INSERT_JOB_AND_TASKS: Final = (
    "WITH j AS (INSERT INTO jobs (id, name, owner, created) SELECT * FROM "
    "unnest($26::text[], $27::text[], $28::text[], $29::float8[])) "
    + _INSERT_TASKS
    + " SELECT r.id, r.name, r.command, r.state, r.queue, r.priority, r.max_retry_count, "
    "r.pending, r.grace, r.estimated, r.resources::jsonb, r.cores, r.memory, r.gpus, "
    "r.env::jsonb, r.cwd, r.owner, r.created, r.updated, r.etag, r.job, r.run_when, "
    f"r.time_limit, r.not_before, r.max_abandons FROM unnest({_TASK_ARRAYS}) AS r(id, name, "
    "command, state, queue, priority, max_retry_count, pending, grace, estimated, resources, "
    "cores, memory, gpus, env, cwd, owner, created, updated, etag, job, run_when, time_limit, "
    "not_before, max_abandons)"
)
INSERT_CONTINUATION: Final = (
    "INSERT INTO continuations (parent, child, position) VALUES ($1, $2, $3)"
)
FIRST_TAKEN_ID: Final = "SELECT id, owner FROM tasks WHERE id = ANY($1::text[]) LIMIT 1"
STATE_OWNER_OF_IDS: Final = (
    "SELECT id, state, owner FROM tasks WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"
)
ETAGS_OF_IDS: Final = "SELECT id, etag FROM tasks WHERE id = ANY($1::text[])"
CONTINUATIONS_OF_IDS: Final = (
    "SELECT parent, child FROM continuations WHERE parent = ANY($1::text[]) "
    "ORDER BY parent, position"
)
CHILDREN_OF: Final = "SELECT child FROM continuations WHERE parent = $1 ORDER BY position"
WAIT_ROW: Final = "SELECT state, name, queue FROM tasks WHERE id = $1"
WAIT_AGAIN: Final = (
    "UPDATE tasks SET pending_dependency_count = pending_dependency_count + $1, "
    f"state = 'inactive', updated = $2, etag = {_ETAG} WHERE id = $3"
)
PATCH_ROW: Final = (  # locks
    "SELECT state, owner, etag, requested_resources::text FROM tasks WHERE id = $1 FOR UPDATE"
)
TOUCH_TASK: Final = f"UPDATE tasks SET updated = $1, etag = {_ETAG} WHERE id = $2"
# Formatted with ``sets`` = "field = $3, ..." of the patched fields.
UPDATE_TASK_FIELDS: Final = f"UPDATE tasks SET {{sets}}, updated = $1, etag = {_ETAG} WHERE id = $2"
HISTORY: Final = (
    "SELECT attempt, worker, CASE WHEN queued THEN NULL ELSE time_started END, "
    "time_terminated, exit_status, exit_code, usage::text FROM attempts "
    "WHERE task_id = $1 ORDER BY attempt"
)

# --- events --------------------------------------------------------------------------
# Rows in the order given (WITH ORDINALITY), so seq follows the order of the events.
INSERT_EVENTS: Final = (
    "INSERT INTO events (time, type, task_id, data) "
    "SELECT e.time, e.type, e.task_id, e.data FROM unnest("
    "$1::float8[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY "
    "AS e(time, type, task_id, data, n) ORDER BY e.n"
)
# The same, under the events lock, with the commit's NOTIFY, in one round trip.
# Parameters 5-7: the lock key, the channel, this server's id. The uncorrelated
# subquery is an InitPlan that gates the scan (a "One-Time Filter"): it runs
# once, before the first row (and so before the first seq) is produced.
INSERT_EVENTS_LOCKED: Final = (
    INSERT_EVENTS.removesuffix(" ORDER BY e.n")
    + " WHERE (SELECT true FROM pg_advisory_xact_lock($5::bigint), pg_notify($6, $7))"
    " ORDER BY e.n"
)
EVENTS_SINCE: Final = (
    "SELECT seq, time, type, data FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"
)
LAST_SEQ: Final = "SELECT coalesce(max(seq), 0) FROM events"
OLDEST_SEQ: Final = "SELECT coalesce(min(seq), 0) FROM events"
PRUNE_EVENTS: Final = "DELETE FROM events WHERE seq <= (SELECT max(seq) FROM events) - $1"

# --- tokens (only hashes are stored) ---------------------------------------------------
TOKEN_REVOKED: Final = "SELECT revoked FROM tokens WHERE name = $1"
INSERT_TOKEN: Final = (
    "INSERT INTO tokens (name, role, hash, created) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT DO NOTHING RETURNING 1"
)
LIST_TOKENS: Final = "SELECT name, role, created, revoked FROM tokens ORDER BY name"
REVOKE_TOKEN: Final = (
    "UPDATE tokens SET revoked = $1 WHERE name = $2 AND revoked IS NULL RETURNING 1"
)
VERIFY_TOKEN: Final = "SELECT name, role, hash FROM tokens WHERE hash = $1 AND revoked IS NULL"
TOKEN_MARK: Final = (
    "SELECT count(*)::float8, count(revoked)::float8, coalesce(max(revoked), 0)::float8, "
    "coalesce(max(id), 0)::float8 FROM tokens"
)
TOKEN_STATE: Final = "SELECT revoked FROM tokens WHERE name = $1"
LIVE_TOKEN_NAMES: Final = "SELECT name FROM tokens WHERE revoked IS NULL AND name = ANY($1::text[])"

# --- idempotent submit -------------------------------------------------------------------
IDEMPOTENCY_FIND: Final = (
    "SELECT request_hash, status, response FROM idempotency "
    "WHERE caller = $1 AND key = $2 AND created >= $3 FOR UPDATE"
)
IDEMPOTENCY_PRUNE: Final = "DELETE FROM idempotency WHERE created < $1"
IDEMPOTENCY_SAVE: Final = (
    "INSERT INTO idempotency (caller, key, request_hash, status, response, created) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (caller, key) DO UPDATE SET "
    "request_hash = excluded.request_hash, status = excluded.status, "
    "response = excluded.response, created = excluded.created"
)

# --- workers and logs ----------------------------------------------------------------------
WORKER_STATE: Final = "SELECT state FROM workers WHERE name = $1 FOR UPDATE"  # locks
UPSERT_WORKER: Final = (
    "INSERT INTO workers (name, token, state, capacity, queues, host, pid, connected, "
    "last_seen, secret, containment) "
    "VALUES ($1, $2, 'connected', $3::jsonb, $4::jsonb, $5, $6, $7, $7, $8, $9) "
    "ON CONFLICT (name) DO UPDATE SET token = excluded.token, state = 'connected', "
    "capacity = excluded.capacity, queues = excluded.queues, host = excluded.host, "
    "pid = excluded.pid, connected = excluded.connected, last_seen = excluded.last_seen, "
    '"left" = NULL, secret = excluded.secret, containment = excluded.containment'
)
HELD_ATTEMPT_STATE: Final = (
    "SELECT t.state FROM tasks t JOIN attempts a ON a.task_id = t.id "
    "AND a.attempt = t.attempt WHERE t.id = $1 AND a.execution_key = $2 AND a.worker = $3 "
    "AND a.time_terminated IS NULL"
)
WORKER_GONE: Final = 'UPDATE workers SET state = $1, "left" = $2 WHERE name = $3'
WORKER_HEARD: Final = "UPDATE workers SET last_seen = greatest(last_seen, $1) WHERE name = $2"
PRUNE_WORKERS: Final = (
    "DELETE FROM workers WHERE state IN ('left', 'lost') AND \"left\" < $1 "
    "AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.worker = workers.name "
    "AND a.time_terminated IS NULL) RETURNING name"
)
WORKER_IDENTITY: Final = (
    "SELECT w.secret, (SELECT count(*) FROM attempts a WHERE a.worker = w.name "
    "AND a.time_terminated IS NULL) FROM workers w WHERE w.name = $1"
)
CONNECTED_WORKERS: Final = "SELECT name FROM workers WHERE state = 'connected' ORDER BY name"
LIST_WORKERS: Final = (
    'SELECT name, state, capacity::text, queues::text, host, pid, connected, last_seen, "left", '
    "containment FROM workers WHERE $1::text IS NULL OR name = $1 ORDER BY name"
)
WORKER_RUNNING: Final = (
    "SELECT t.id, t.name, t.state, t.requested_resources::text, a.attempt, a.time_started, "
    "a.queued FROM attempts a JOIN tasks t ON t.id = a.task_id AND t.attempt = a.attempt "
    "WHERE a.worker = $1 AND a.time_terminated IS NULL ORDER BY a.time_started"
)
LOG_ATTEMPT: Final = (
    "SELECT attempt, worker FROM attempts WHERE task_id = $1 AND execution_key = $2 FOR UPDATE"
)
INSERT_LOG: Final = "INSERT INTO logs (task_id, attempt, stream, data) VALUES ($1, $2, $3, $4)"
ADD_LOG_BYTES: Final = (
    "UPDATE attempts SET log_bytes = log_bytes + $1 WHERE task_id = $2 AND attempt = $3 "
    "RETURNING log_bytes"
)
OLDEST_LOG: Final = (
    "SELECT id, length(data) FROM logs WHERE task_id = $1 AND attempt = $2 ORDER BY id LIMIT 1"
)
DELETE_LOG: Final = "DELETE FROM logs WHERE id = $1"
DROP_LOG_BYTES: Final = (
    "UPDATE attempts SET log_bytes = log_bytes - $1, log_dropped = log_dropped + $1 "
    "WHERE task_id = $2 AND attempt = $3"
)
TASK_ATTEMPT: Final = "SELECT attempt FROM tasks WHERE id = $1"
LOG_DROPPED: Final = "SELECT log_dropped FROM attempts WHERE task_id = $1 AND attempt = $2"
LOG_CHUNKS: Final = (
    "SELECT data FROM logs WHERE task_id = $1 AND attempt = $2 AND stream = $3 ORDER BY id"
)

# --- health ----------------------------------------------------------------------------
SCHEMA_VERSION: Final = "SELECT count(*) FROM schema_version"
