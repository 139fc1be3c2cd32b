"""The SQLite backend's SQL statements, named in one place (as procrastinate
keeps its queries): the modules beside it run these by name."""

from __future__ import annotations

from typing import Final

# Available tasks a claim may hand out, in the claim policy's order; formatted
# with the queue placeholders and ``server.domain.claims.ORDER``. Parameters:
# *queues, max cores, max memory, max gpus, how many to look at.
CLAIM_CANDIDATES: Final = (
    "SELECT id, cores, memory, gpus, requested_resources, name, queue, command, env, cwd, "
    "max_termination_time FROM tasks INDEXED BY tasks_claim "
    "WHERE state = 'available' AND queue IN ({queues}) "
    "AND cores <= ? AND memory <= ? AND gpus <= ? "
    "ORDER BY {order} LIMIT ?"
)

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
}

# What a state change needs of a task (server.domain.transitions.TaskRef) and
# whether it is a group task.
READY_ROW: Final = "SELECT command, state, name, queue FROM tasks WHERE id = ?"
USER_CHANGE_ROW: Final = (
    "SELECT state, pending_dependency_count, exit_status, name, queue FROM tasks WHERE id = ?"
)
# A parent succeeded: its continuations wait on one parent less.
RELEASE: Final = (
    "UPDATE tasks SET pending_dependency_count = pending_dependency_count - 1, "
    f"updated = ?, etag = {_ETAG} "
    "WHERE id IN (SELECT child FROM continuations WHERE parent = ?) "
    "RETURNING id, pending_dependency_count, state"
)
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

# --- the continuation graph -------------------------------------------------------
REACHES: Final = DESCENDANTS.format(roots="?") + "SELECT 1 FROM d WHERE id = ? LIMIT 1"
EDGE_ENDS: Final = "SELECT id, state, owner, exit_status FROM tasks WHERE id IN ({ids})"
EDGE_EXISTS: Final = "SELECT 1 FROM continuations WHERE parent = ? AND child = ?"
INSERT_EDGE: Final = (
    "INSERT INTO continuations (parent, child, position) VALUES (?, ?, "
    "(SELECT coalesce(max(position), -1) + 1 FROM continuations WHERE parent = ?))"
)
DELETE_EDGE: Final = "DELETE FROM continuations WHERE parent = ? AND child = ? RETURNING 1"
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
    "INSERT INTO memory_usage (task_id, attempt, time, resident_memory_bytes) VALUES (?, ?, ?, ?)"
)

# --- workers ---------------------------------------------------------------------------
# The state of a task whose open attempt (this key, this worker) a rejoining
# worker names; no row when that attempt is no longer its own.
HELD_ATTEMPT_STATE: Final = (
    "SELECT t.state FROM tasks t JOIN attempts a ON a.task_id = t.id "
    "AND a.attempt = t.attempt WHERE t.id = ? AND a.execution_key = ? AND a.worker = ? "
    "AND a.time_terminated IS NULL"
)

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
