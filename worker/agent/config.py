"""What the worker agent is told (:class:`WorkerConfig`), what it holds for
each attempt it runs (:class:`Job`), and its constants and exit codes."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass, field

from banyan import protocol as p
from banyan.client.discovery import Connection
from banyan.resources import Resources
from worker import runner

STOPPED = "abandoned (worker stopped)"  # follows the retry rule, like a lost worker
RECONNECT_MAX_S = 2.0
OUTPUT_FLUSH_S = 0.1
DEFAULT_PREFETCH = 8  # banyan-worker --prefetch (docs/prefetch.md: the trade-off)
CONNECT_TIMEOUT_S = 15.0  # TCP connect, and the upgrade's response: a cut network must not hang it
FENCED = "the worker's lease lapsed (no word from the server): stopped"
NOT_STARTED = "not started: the worker's lease had lapsed"
# Exit codes of banyan-worker (listed in its --help).
EXIT_OK = 0
EXIT_USAGE = 2  # as for bad arguments
EXIT_TOKEN_REFUSED = 77  # sysexits' EX_NOPERM: 401/403 at connect, retrying cannot help
EXIT_ALREADY_CONNECTED = 75  # sysexits' EX_TEMPFAIL: another process is this worker (4409)
TOKEN_REFUSED = {
    401: "the server refused the token (401): it is unknown or revoked",
    403: "the server refused the token (403): its role cannot run a worker; "
    "use a worker or admin token (banyan-server token create --role worker)",
}
# Close codes after which reconnecting cannot help: the exit code, and what to say.
FATAL_CLOSES = {
    p.CLOSE_UNAUTHORIZED: (EXIT_TOKEN_REFUSED, "the server closed the connection: {}"),
    p.CLOSE_FORBIDDEN: (EXIT_TOKEN_REFUSED, "the server refused this worker: {}"),
    p.CLOSE_DUPLICATE: (
        EXIT_ALREADY_CONNECTED,
        "the server refused this worker: {} (give each worker a token of its own)",
    ),
}


def path_with_banyan() -> str:
    """$PATH with this installation's bin directory appended, so ``banyan
    progress`` works inside tasks even when Banyan lives in a virtualenv."""
    path = os.environ.get("PATH", os.defpath)
    here = os.path.dirname(sys.executable)
    return path if here in path.split(os.pathsep) else f"{path}{os.pathsep}{here}"


@dataclass
class WorkerConfig:
    connection: Connection
    name: str | None  # None: the worker token's name (an admin token: hostname:pid)
    capacity: Resources
    gpu_indices: list[int] = field(default_factory=list)
    queues: list[str] = field(default_factory=lambda: ["default"])
    drain: bool = False
    usage_interval_s: float = 2.0
    max_log_bytes: int = 1 << 20
    claim_limit: int = 32
    # Attempts held queued beyond what runs, started the moment a slot frees
    # (the server caps it with max_prefetch, and grants none while another
    # worker of the same queues is idle). 0: claim only what fits now.
    prefetch: int = DEFAULT_PREFETCH
    burst: bool = False  # exit once nothing is left to claim or run (tests, batch use)
    log_format: str = "text"  # also for the reaper sidecar's lines
    enforce_memory: bool = False  # a task's memory request is its cgroup's memory.max
    containment: str = "auto"  # or insist on "cgroup" / "subreaper"
    # The worker's lifetime from its start (--time-limit), as a batch allocation's:
    # claims carry what is left, and the worker stops when it runs out.
    time_limit_s: float | None = None


@dataclass
class Job:
    attempt: p.AssignedAttempt
    request: Resources
    gpus: list[int]
    task: runner.RunningTask | None = None
    cancelled: bool = False  # the server asked to stop it
    stopped: bool = False  # the worker is shutting down without draining
    output: dict[str, bytearray] = field(
        default_factory=lambda: {"stdout": bytearray(), "stderr": bytearray()}
    )
    flush_scheduled: bool = False
    fenced: bool = False  # stopped because the lease lapsed
    forgotten: bool = False  # dropped with the task cache: nothing is reported
    timed_out: bool = False  # stopped at its time_limit: "failure (time limit)"
    limit_timer: asyncio.TimerHandle | None = None
