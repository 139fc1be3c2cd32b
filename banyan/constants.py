"""Every default Banyan ships with, each named with its unit, in one place."""

from __future__ import annotations

from typing import Final

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 5100  # as the original system
APP_NAME: Final = "banyan"

# Eve's default DATE_FORMAT (RFC 1123, always GMT).
DEFAULT_DATE_FORMAT: Final = "%a, %d %b %Y %H:%M:%S GMT"

HEARTBEAT_INTERVAL_S: Final = 5.0
WORKER_TIMEOUT_S: Final = 30.0
SERVER_TIMEOUT_S: Final = 60.0

# Paging, as Eve: 25 per page unless asked, never more than the limit.
DEFAULT_MAX_RESULTS: Final = 25
MAX_RESULTS_LIMIT: Final = 1000

# Request bounds: a bulk POST of 100,000 small tasks is ~15 MB of JSON.
MAX_BODY_BYTES: Final = 64 * 1024 * 1024
MAX_BULK_ITEMS: Final = 100_000
MAX_NAME_CHARS: Final = 1024
MAX_COMMAND_CHARS: Final = 128 * 1024
MAX_QUEUE_CHARS: Final = 128
MAX_CWD_CHARS: Final = 4096
MAX_ENV_ENTRIES: Final = 1024
MAX_ENV_NAME_CHARS: Final = 256
MAX_ENV_VALUE_CHARS: Final = 32 * 1024
# All of a task's env, keys and values: Linux refuses to exec much more (E2BIG).
MAX_ENV_TOTAL_CHARS: Final = 1024 * 1024
MAX_CONTINUATIONS: Final = 10_000
# Idempotent submit (issue 11): how long a POST /tasks answer is kept for a
# retry with the same Idempotency-Key, and the longest key accepted.
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
IDEMPOTENCY_RETENTION_S: Final = 24 * 3600.0
MAX_IDEMPOTENCY_KEY_CHARS: Final = 255
MAX_PRIORITY: Final = 2**31 - 1
MAX_RETRY_COUNT: Final = 10_000
MAX_MEMORY_USAGE_RECORDS: Final = 10_000

DEFAULT_MAX_TERMINATION_TIME_S: Final = 600.0  # "10 minutes"
# Reruns after the task's worker died or was stopped (HyperQueue's crash limit is 5).
DEFAULT_MAX_ABANDON_COUNT: Final = 3
DEFAULT_QUEUE: Final = "default"

# Group commit: how many write operations may share one transaction/fsync.
COMMIT_BATCH_MAX_OPS: Final = 512
# How long an authenticated token stays cached in the server (revocations
# made by `banyan-server token revoke` in another process apply within this).
TOKEN_CACHE_S: Final = 1.0
SQLITE_BUSY_TIMEOUT_MS: Final = 10_000

TOKEN_PREFIX: Final = "byn_"
LOCAL_ADMIN_TOKEN_NAME: Final = "local-admin"
CLIENT_FILE_NAME: Final = "client.json"
PROGRESS_SOCKET_ENV: Final = "BANYAN_PROGRESS_SOCKET"  # set by the worker for each task
