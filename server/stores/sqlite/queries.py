"""The SQLite backend's SQL statements, named in one place (as procrastinate
keeps its queries): the modules beside it run these by name."""

from __future__ import annotations

from typing import Final

# A task row's columns, in the order ``rows.row_to_doc`` unpacks them.
TASK_COLUMNS: Final = (
    "id, name, command, state, queue, priority, max_retry_count, retry_count, "
    "pending_dependency_count, max_termination_time, estimated_runtime, requested_resources, "
    "env, cwd, owner, attempt, worker, exit_status, exit_code, time_started, time_terminated, "
    "progress, created, updated, etag, "
    # issue 13: appended, read by name in row_to_doc's tail
    "time_limit, not_before, max_abandon_count, abandon_count, job, run_when"
)

# Available tasks a claim may hand out, in the claim policy's order; formatted
# with the queue placeholders and ``server.domain.claims.ORDER``. Parameters:
# *queues, max cores, max memory, max gpus, how many to look at.
# Then: now (``not_before`` passed), the worker's remaining lifetime or NULL
# (``server.domain.claims.time_bounds``).
CLAIM_CANDIDATES: Final = (
    "SELECT id, cores, memory, gpus, requested_resources, name, queue, command, env, cwd, "
    "max_termination_time, time_limit FROM tasks INDEXED BY tasks_claim "
    "WHERE state = 'available' AND queue IN ({queues}) "
    "AND cores <= ? AND memory <= ? AND gpus <= ? "
    "AND (not_before IS NULL OR not_before <= ?) "
    "AND (time_limit IS NULL OR time_limit <= coalesce(?, time_limit)) "
    "ORDER BY {order} LIMIT ?"
)
# A claim whose free share has no core left (a full worker refilling its
# prefetch queue) can only get tasks asking for (next to) no core; those are in
# the small partial index ``tasks_claim_coreless`` (migration 13), so the scan
# does not walk every available task to find none. Used when the cores bound is
# at most ``CORELESS_CORES``; the literal in the WHERE clause is the index's own
# (SQLite uses a partial index only when the query repeats its condition).
CORELESS_CORES: Final = 1e-6
CLAIM_CANDIDATES_CORELESS: Final = CLAIM_CANDIDATES.replace(
    "INDEXED BY tasks_claim ", "INDEXED BY tasks_claim_coreless "
).replace("AND cores <= ?", "AND cores <= 1e-6 AND cores <= ?")
# The fields of a new task that most leave at their defaults (tasks.create_tasks).
SET_TIME_AND_ABANDON: Final = (
    "UPDATE tasks SET time_limit = ?, not_before = ?, max_abandon_count = ? WHERE id = ?"
)
# The earliest begin time still ahead among available tasks (the begin timer).
NEXT_BEGIN: Final = "SELECT min(not_before) FROM tasks WHERE state = 'available' AND not_before > ?"

_ETAG: Final = "lower(hex(randomblob(10)))"  # a new _etag, made by SQLite

# --- state changes (server.domain.transitions.Kind → its statement) -------------
# Named parameters: :id, :now, :origin (the cancel origin), :exit_status.
SET_STATE: Final = {
    "available": f"UPDATE tasks SET state = 'available', updated = :now, etag = {_ETAG} "
    "WHERE id = :id",
    "group_succeeded": "UPDATE tasks SET state = 'terminated', exit_status = :exit_status, "
    "exit_code = NULL, time_started = :now, time_terminated = :now, updated = :now, "
    f"etag = {_ETAG} WHERE id = :id",
    "cancelled": "UPDATE tasks SET state = 'cancelled', cancel_origin = :origin, "
    f"updated = :now, etag = {_ETAG} WHERE id = :id",
    "stopping": "UPDATE tasks SET state = 'pending_cancellation', cancel_origin = :origin, "
    f"updated = :now, etag = {_ETAG} WHERE id = :id",
    "revived": "UPDATE tasks SET state = 'inactive', cancel_origin = NULL, updated = :now, "
    f"etag = {_ETAG} WHERE id = :id",
    "skipped": "UPDATE tasks SET state = 'cancelled', cancel_origin = NULL, "
    "exit_status = :exit_status, exit_code = NULL, time_terminated = :now, updated = :now, "
    f"etag = {_ETAG} WHERE id = :id",
}

# What a state change needs of a task (server.domain.transitions.TaskRef) and
# whether it is a group task.
READY_ROW: Final = "SELECT command, state, name, queue FROM tasks WHERE id = ?"
USER_CHANGE_ROW: Final = (
    "SELECT state, pending_dependency_count, exit_status, name, queue FROM tasks WHERE id = ?"
)
# A parent ended (server.domain.dependencies): the edges that still hold a
# continuation back, with what the rules need of the child.
OPEN_EDGES: Final = (
    "SELECT t.id, t.state, t.name, t.queue, t.run_when FROM continuations c "
    "JOIN tasks t ON t.id = c.child WHERE c.parent = ? AND c.released = 0 ORDER BY c.position"
)
RELEASE_EDGE: Final = "UPDATE continuations SET released = 1 WHERE parent = ? AND child = ?"
WAIT_ON_ONE_LESS_RETURNING: Final = (
    "UPDATE tasks SET pending_dependency_count = pending_dependency_count - 1, "
    f"updated = ?, etag = {_ETAG} WHERE id = ? RETURNING pending_dependency_count"
)
# Did a parent of this task fail (or was it cancelled)? A skipped parent did not.
A_PARENT_FAILED: Final = (
    "SELECT 1 FROM continuations c JOIN tasks p ON p.id = c.parent WHERE c.child = ? AND ("
    "(p.state = 'terminated' AND p.exit_status IS NOT 'success') OR "
    "(p.state = 'cancelled' AND p.exit_status IS NOT ?)) LIMIT 1"
)
TASK_RESULT: Final = "SELECT state, exit_status FROM tasks WHERE id = ?"
# The tasks a cascade from :root cancelled that never ran (to revive).
DESCENDANTS: Final = """
    WITH RECURSIVE d(id) AS (
        SELECT child FROM continuations WHERE parent IN ({roots})
        UNION
        SELECT c.child FROM continuations c JOIN d ON c.parent = d.id
    )
"""
REVIVABLE: Final = (
    DESCENDANTS.format(roots="?") + "SELECT id, name, queue, pending_dependency_count FROM tasks "
    "WHERE id IN (SELECT id FROM d) AND state = 'cancelled' AND cancel_origin = ? "
    "AND attempt = 0"
)
RESET_RETRIES: Final = "UPDATE tasks SET retry_count = 0, cancel_origin = NULL WHERE id = ?"
# A task's current attempt, for a report on it.
CURRENT_ATTEMPT: Final = (
    "SELECT t.state, t.attempt, t.retry_count, t.max_retry_count, t.name, t.queue, "
    "a.execution_key, a.token, a.time_terminated, a.exit_status, a.worker "
    "FROM tasks t LEFT JOIN attempts a ON a.task_id = t.id AND a.attempt = t.attempt "
    "WHERE t.id = ?"
)
# Which attempt of a task a (stale) execution key named, if any.
ATTEMPT_OF_KEY: Final = "SELECT attempt FROM attempts WHERE task_id = ? AND execution_key = ?"
END_ATTEMPT: Final = (
    "UPDATE attempts SET time_terminated = ?, exit_status = ?, exit_code = ?, usage = ? "
    "WHERE task_id = ? AND attempt = ?"
)
END_TASK_ATTEMPT: Final = (
    "UPDATE tasks SET state = ?, exit_status = ?, exit_code = ?, time_terminated = ?, "
    f"retry_count = retry_count + ?, updated = ?, etag = {_ETAG} WHERE id = ?"
)
START_ATTEMPT: Final = (
    "UPDATE tasks SET state = 'running', attempt = attempt + 1, worker = ?, "
    "exit_status = NULL, exit_code = NULL, time_started = ?, time_terminated = NULL, "
    f"progress = NULL, updated = ?, etag = {_ETAG} WHERE id = ? "
    "RETURNING attempt"
)
INSERT_ATTEMPT: Final = (
    "INSERT INTO attempts (task_id, attempt, execution_key, worker, token, time_started) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
CHILDREN: Final = "SELECT child FROM continuations WHERE parent = ?"
# Prefetch: a queued attempt has no start time until the worker says it started.
START_QUEUED_ATTEMPT: Final = (
    "UPDATE tasks SET state = 'running', attempt = attempt + 1, worker = ?, "
    "exit_status = NULL, exit_code = NULL, time_started = NULL, time_terminated = NULL, "
    f"progress = NULL, updated = ?, etag = {_ETAG} WHERE id = ? "
    "RETURNING attempt"
)
INSERT_QUEUED_ATTEMPT: Final = (
    "INSERT INTO attempts (task_id, attempt, execution_key, worker, token, time_started, "
    "queued) VALUES (?, ?, ?, ?, ?, ?, 1)"
)
ATTEMPT_QUEUED: Final = "SELECT queued FROM attempts WHERE task_id = ? AND attempt = ?"
MARK_ATTEMPT_STARTED: Final = (
    "UPDATE attempts SET queued = 0, time_started = ? WHERE task_id = ? AND attempt = ?"
)
MARK_TASK_STARTED: Final = (
    f"UPDATE tasks SET time_started = ?, updated = ?, etag = {_ETAG} WHERE id = ?"
)
# The crash budget (issue 13): abandonments so far and how many are allowed.
ABANDON_BUDGET: Final = "SELECT abandon_count, max_abandon_count FROM tasks WHERE id = ?"
COUNT_ABANDON: Final = "UPDATE tasks SET abandon_count = abandon_count + 1 WHERE id = ?"
RESET_ABANDONS: Final = "UPDATE tasks SET abandon_count = 0 WHERE id = ?"

# --- the continuation graph -------------------------------------------------------
REACHES: Final = DESCENDANTS.format(roots="?") + "SELECT 1 FROM d WHERE id = ? LIMIT 1"
EDGE_ENDS: Final = "SELECT id, state, owner, exit_status FROM tasks WHERE id IN ({ids})"
EDGE_EXISTS: Final = "SELECT 1 FROM continuations WHERE parent = ? AND child = ?"
INSERT_EDGE: Final = (
    "INSERT INTO continuations (parent, child, position) VALUES (?, ?, "
    "(SELECT coalesce(max(position), -1) + 1 FROM continuations WHERE parent = ?))"
)
DELETE_EDGE: Final = "DELETE FROM continuations WHERE parent = ? AND child = ? RETURNING released"
WAIT_ON_ONE_MORE: Final = (
    "UPDATE tasks SET pending_dependency_count = pending_dependency_count + 1, "
    f"state = 'inactive', updated = ?, etag = {_ETAG} WHERE id = ? "
    "RETURNING name, queue"
)
WAIT_ON_ONE_LESS: Final = (
    "UPDATE tasks SET pending_dependency_count = pending_dependency_count - 1, "
    f"updated = ?, etag = {_ETAG} WHERE id = ?"
)

# --- attempts: progress, abandonment, memory usage ------------------------------------
SET_PROGRESS: Final = "UPDATE tasks SET progress = ?, updated = ? WHERE id = ?"
OPEN_ATTEMPTS: Final = (
    "SELECT a.task_id, a.execution_key FROM attempts a JOIN tasks t "
    "ON t.id = a.task_id AND t.attempt = a.attempt "
    "WHERE a.worker = ? AND a.time_terminated IS NULL"
)
OPEN_QUEUED_ATTEMPTS: Final = (
    "SELECT a.task_id, a.execution_key FROM attempts a JOIN tasks t "
    "ON t.id = a.task_id AND t.attempt = a.attempt "
    "WHERE a.worker = ? AND a.time_terminated IS NULL AND a.queued = 1"
)
USAGE_ROW: Final = (
    "SELECT t.state, t.attempt, a.token FROM tasks t LEFT JOIN attempts a "
    "ON a.task_id = t.id AND a.attempt = t.attempt WHERE t.id = ?"
)
INSERT_USAGE: Final = (
    "INSERT INTO memory_usage (task_id, attempt, time, resident_memory_bytes, cpu_percent) "
    "VALUES (?, ?, ?, ?, ?)"
)

# --- workers ---------------------------------------------------------------------------
# The state of a task whose open attempt (this key, this worker) a rejoining
# worker names; no row when that attempt is no longer its own.
# A worker went (state 'left' or 'lost', at :now); its last_seen is kept.
WORKER_GONE: Final = "UPDATE workers SET state = ?, left = ? WHERE name = ?"
WORKER_HEARD: Final = "UPDATE workers SET last_seen = max(last_seen, ?) WHERE name = ?"
PRUNE_WORKERS: Final = (
    "DELETE FROM workers WHERE state IN ('left', 'lost') AND \"left\" < ? "
    "AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.worker = workers.name "
    "AND a.time_terminated IS NULL) RETURNING name"
)
HELD_ATTEMPT_STATE: Final = (
    "SELECT t.state FROM tasks t JOIN attempts a ON a.task_id = t.id "
    "AND a.attempt = t.attempt WHERE t.id = ? AND a.execution_key = ? AND a.worker = ? "
    "AND a.time_terminated IS NULL"
)

# --- jobs (one per POST /tasks; counts and span kept by schema triggers) -------------
INSERT_JOB: Final = "INSERT INTO jobs (id, name, owner, created) VALUES (?, ?, ?, ?)"
JOB_COLUMNS: Final = "id, name, owner, created, total, first_started, last_ended"
JOB_COUNTS: Final = "SELECT job, state, n FROM job_counts WHERE job IN ({ids}) AND n > 0"

# --- events ----------------------------------------------------------------------------
EVENTS_SINCE: Final = "SELECT seq, time, type, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
LAST_SEQ: Final = "SELECT coalesce(max(seq), 0) FROM events"
OLDEST_SEQ: Final = "SELECT coalesce(min(seq), 0) FROM events"
PRUNE_EVENTS: Final = "DELETE FROM events WHERE seq <= ?"

# --- tokens (only hashes are stored) ------------------------------------------------------
TOKEN_REVOKED: Final = "SELECT revoked FROM tokens WHERE name = ?"
DELETE_TOKEN: Final = "DELETE FROM tokens WHERE name = ?"
INSERT_TOKEN: Final = "INSERT INTO tokens (name, role, hash, created) VALUES (?, ?, ?, ?)"
LIST_TOKENS: Final = "SELECT name, role, created, revoked FROM tokens ORDER BY name"
REVOKE_TOKEN: Final = "UPDATE tokens SET revoked = ? WHERE name = ? AND revoked IS NULL RETURNING 1"
VERIFY_TOKEN: Final = "SELECT name, role, hash FROM tokens WHERE hash = ? AND revoked IS NULL"

# --- idempotent submit (server.domain.idempotency) ------------------------------
IDEMPOTENCY_FIND: Final = (
    "SELECT request_hash, status, response FROM idempotency "
    "WHERE caller = ? AND key = ? AND created >= ?"
)
IDEMPOTENCY_PRUNE: Final = "DELETE FROM idempotency WHERE created < ?"
IDEMPOTENCY_SAVE: Final = (
    "INSERT OR REPLACE INTO idempotency (caller, key, request_hash, status, response, created) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)

# The available tasks a claim from these queues would consider before a task
# (pending reasons); formatted like CLAIM_CANDIDATES. Parameters: *queues,
# the task's priority (twice), its id, how many.
TASKS_AHEAD: Final = (
    "SELECT id, cores, memory, gpus, requested_resources FROM tasks INDEXED BY tasks_claim "
    "WHERE state = 'available' AND queue IN ({queues}) "
    "AND (priority > ? OR (priority = ? AND id < ?)) "
    "ORDER BY {order} LIMIT ?"
)

# A change in any of these means a token was revoked, deleted or added: the
# server's revocation watch then checks the tokens of its open sockets.
TOKEN_MARK: Final = (
    "SELECT count(*), count(revoked), coalesce(max(revoked), 0), coalesce(max(id), 0) FROM tokens"
)
TOKEN_STATE: Final = "SELECT revoked FROM tokens WHERE name = ?"

# --- worker identity ------------------------------------------------------------------------
WORKER_IDENTITY: Final = (
    "SELECT w.secret, (SELECT count(*) FROM attempts a WHERE a.worker = w.name "
    "AND a.time_terminated IS NULL) FROM workers w WHERE w.name = ?"
)
SET_WORKER_SECRET: Final = "UPDATE workers SET secret = ? WHERE name = ?"

# --- tasks: create, edit, read (tasks.py, rows.py, store.py) --------------------
TASK_BY_ID: Final = f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?"
TASK_EXISTS: Final = "SELECT 1 FROM tasks WHERE id = ?"
INSERT_TASK: Final = (
    "INSERT INTO tasks (id, name, command, state, queue, priority, max_retry_count, "
    "pending_dependency_count, max_termination_time, estimated_runtime, requested_resources, "
    "cores, memory, gpus, env, cwd, owner, created, updated, etag, job, run_when) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# New tasks counted per POST (no insert triggers since migration 12).
ADD_TASK_COUNT: Final = (
    "INSERT INTO task_counts (queue, state, n) VALUES (?, ?, ?) "
    "ON CONFLICT (queue, state) DO UPDATE SET n = n + excluded.n"
)
ADD_JOB_COUNT: Final = (
    "INSERT INTO job_counts (job, state, n) VALUES (?, ?, ?) "
    "ON CONFLICT (job, state) DO UPDATE SET n = n + excluded.n"
)
ADD_JOB_TOTAL: Final = "UPDATE jobs SET total = total + ? WHERE id = ?"
INSERT_CONTINUATION: Final = "INSERT INTO continuations (parent, child, position) VALUES (?, ?, ?)"
# Formatted with ``ids`` = one placeholder per id (``placeholders``).
FIRST_TAKEN_ID: Final = "SELECT id, owner FROM tasks WHERE id IN ({ids}) LIMIT 1"
STATE_OWNER_OF_IDS: Final = "SELECT id, state, owner FROM tasks WHERE id IN ({ids})"
ETAGS_OF_IDS: Final = "SELECT id, etag FROM tasks WHERE id IN ({ids})"
CONTINUATIONS_OF_IDS: Final = (
    "SELECT parent, child FROM continuations WHERE parent IN ({ids}) ORDER BY parent, position"
)
CHILDREN_OF: Final = "SELECT child FROM continuations WHERE parent = ?"
WAIT_ROW: Final = "SELECT state, name, queue FROM tasks WHERE id = ?"
# A child made to wait again on ``?`` more parents (now, id).
WAIT_AGAIN: Final = (
    "UPDATE tasks SET pending_dependency_count = pending_dependency_count + ?, "
    f"state = 'inactive', updated = ?, etag = {_ETAG} WHERE id = ?"
)
PATCH_ROW: Final = "SELECT state, owner, etag, requested_resources FROM tasks WHERE id = ?"
TOUCH_TASK: Final = f"UPDATE tasks SET updated = ?, etag = {_ETAG} WHERE id = ?"
# Formatted with ``sets`` = "field = ?, ..." of the patched fields (``_update_fields``).
UPDATE_TASK_FIELDS: Final = f"UPDATE tasks SET {{sets}}, updated = ?, etag = {_ETAG} WHERE id = ?"
# A prefetched attempt that never started has no start time.
HISTORY: Final = (
    "SELECT attempt, worker, CASE WHEN queued THEN NULL ELSE time_started END, "
    "time_terminated, exit_status, exit_code, usage FROM attempts "
    "WHERE task_id = ? ORDER BY attempt"
)
INSERT_EVENT: Final = "INSERT INTO events (time, type, task_id, data) VALUES (?, ?, ?, ?)"
INSERT_EVENT_RETURNING_SEQ: Final = f"{INSERT_EVENT} RETURNING seq"
LAST_INSERT_ROWID: Final = "SELECT last_insert_rowid()"
JOB_BY_ID: Final = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"
# Formatted with ``names`` = one placeholder per token name.
LIVE_TOKEN_NAMES: Final = "SELECT name FROM tokens WHERE revoked IS NULL AND name IN ({names})"

# --- workers and logs (workers.py) ---------------------------------------------
WORKER_COLUMNS: Final = (
    "name, token, state, capacity, queues, host, pid, connected, last_seen, left, containment"
)
WORKER_STATE: Final = "SELECT state FROM workers WHERE name = ?"
UPSERT_WORKER: Final = (
    "INSERT INTO workers (name, token, state, capacity, queues, host, pid, connected, "
    "last_seen, containment) VALUES (?, ?, 'connected', ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET token = excluded.token, state = 'connected', "
    "capacity = excluded.capacity, queues = excluded.queues, host = excluded.host, "
    "pid = excluded.pid, connected = excluded.connected, last_seen = excluded.last_seen, "
    "left = NULL, containment = excluded.containment"
)
CONNECTED_WORKERS: Final = "SELECT name FROM workers WHERE state = 'connected'"
# Formatted with ``where`` = "" (all) or "WHERE name = ?" (one).
LIST_WORKERS: Final = f"SELECT {WORKER_COLUMNS} FROM workers {{where}} ORDER BY name"
# The last column: queued (prefetched, held but not started).
WORKER_RUNNING: Final = (
    "SELECT t.id, t.name, t.state, t.requested_resources, a.attempt, a.time_started, "
    "a.queued FROM attempts a JOIN tasks t ON t.id = a.task_id AND t.attempt = a.attempt "
    "WHERE a.worker = ? AND a.time_terminated IS NULL ORDER BY a.time_started"
)
LOG_ATTEMPT: Final = (
    "SELECT a.attempt, a.worker, a.time_terminated FROM attempts a JOIN tasks t "
    "ON t.id = a.task_id WHERE a.task_id = ? AND a.execution_key = ?"
)
INSERT_LOG: Final = "INSERT INTO logs (task_id, attempt, stream, data) VALUES (?, ?, ?, ?)"
ADD_LOG_BYTES: Final = (
    "UPDATE attempts SET log_bytes = log_bytes + ? WHERE task_id = ? AND attempt = ? "
    "RETURNING log_bytes"
)
OLDEST_LOG: Final = (
    "SELECT id, length(data) FROM logs WHERE task_id = ? AND attempt = ? ORDER BY id LIMIT 1"
)
DELETE_LOG: Final = "DELETE FROM logs WHERE id = ?"
DROP_LOG_BYTES: Final = (
    "UPDATE attempts SET log_bytes = log_bytes - ?, log_dropped = log_dropped + ? "
    "WHERE task_id = ? AND attempt = ?"
)
TASK_ATTEMPT: Final = "SELECT attempt FROM tasks WHERE id = ?"
LOG_DROPPED: Final = "SELECT log_dropped FROM attempts WHERE task_id = ? AND attempt = ?"
LOG_CHUNKS: Final = (
    "SELECT data FROM logs WHERE task_id = ? AND attempt = ? AND stream = ? ORDER BY id"
)

# --- health (store.health) ---
SCHEMA_VERSION: Final = "PRAGMA user_version"
JOURNAL_MODE: Final = "PRAGMA journal_mode"
