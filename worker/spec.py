"""What the runner is given and what it gives back: the task spec, the
result with its SPEC §3 exit status, the child's environment and the bounded
log tail. Pure data and functions, no processes.

A task's environment (:func:`child_env`) is the worker's own, minus every
``BANYAN_*`` variable of the worker's (its token, server URL, CA
certificate, settings and client files, server settings: see
:data:`STRIPPED_NAMES` for the ones known today; the prefix rule also covers
those added later), then the task's own ``env`` (which may set ``BANYAN_*``
names itself), then what the worker sets: ``CUDA_VISIBLE_DEVICES`` for
assigned GPUs, ``BANYAN_PROGRESS_SOCKET`` and ``PATH`` (with this
installation's ``bin``), ``BANYAN_TASK_ID`` and ``BANYAN_ATTEMPT``.
A task gets no credential of the worker's: anything it needs to call the
server must come in its own ``env``."""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TaskSpec:
    """What the agent asks the runner to run (one attempt of one task)."""

    task_id: str
    attempt: int
    command: str  # run with /bin/sh -c
    env: Mapping[str, str] | None
    cwd: str | None
    max_termination_time_s: float  # SIGTERM → SIGKILL grace of terminate()
    gpus: Sequence[int] = ()  # → CUDA_VISIBLE_DEVICES when non-empty
    extra_env: Mapping[str, str] = field(default_factory=dict)  # set by the agent


@dataclass(frozen=True)
class Result:
    """How an attempt ended. ``exit_status`` is one of the SPEC §3 strings."""

    exit_status: str
    exit_code: int | None  # the exit code when the shell exited; None when signalled
    # cpu_user_s, cpu_system_s, wall_s, and peak_rss_bytes once anything was measured
    usage: dict[str, float]
    error: str | None = None  # why the command could not start


def exit_status_of(wait_status: int) -> tuple[str, int | None]:
    """SPEC §3 status string and exit code of a ``wait4`` status."""
    if os.WIFSIGNALED(wait_status):
        return f"failure ({signal_name(os.WTERMSIG(wait_status))})", None
    code = os.waitstatus_to_exitcode(wait_status)
    return ("success" if code == 0 else "failure"), code


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:  # real-time signals have no enum member of their own
        return f"SIGRTMIN+{signum - signal.SIGRTMIN}"


def _environ_bytes() -> dict[bytes, bytes]:
    """A copy of the worker's environment as bytes.

    ``os.environ`` keeps its encoded contents in ``_data`` (since 3.2), and a
    C-level dict copy of it costs 0.2 µs where ``dict(os.environb)`` walks the
    mapping protocol for ~20 µs: a measurable share of a spawn.
    """
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict):
        return data.copy()
    return dict(os.environb)


STRIPPED_PREFIX = b"BANYAN_"
# The worker's variables a task must never see, named for the docs and tests;
# the prefix rule strips them (and any other BANYAN_* of the worker's) anyway.
# Client discovery (banyan/client/discovery.py): token, server, CA certificate,
# client file; the settings file; and every server setting (banyan/settings.py).
STRIPPED_NAMES = (
    "BANYAN_TOKEN",
    "BANYAN_SERVER",
    "BANYAN_CA_CERT",
    "BANYAN_CLIENT_FILE",
    "BANYAN_CONFIG",
)


def _inherited_env() -> dict[bytes, bytes]:
    """The worker's environment without any ``BANYAN_*`` variable."""
    env = _environ_bytes()
    for key in [k for k in env if k.startswith(STRIPPED_PREFIX)]:
        del env[key]
    return env


def child_env(spec: TaskSpec) -> dict[bytes, bytes]:
    """The worker's environment without its ``BANYAN_*`` variables, + ``env`` +
    GPUs + ``extra_env`` + the task's ids (see the module docstring).

    Bytes throughout, so Popen has nothing to encode for inherited variables.
    """
    env = _inherited_env()
    for key, value in (spec.env or {}).items():
        env[os.fsencode(key)] = os.fsencode(value)
    if spec.gpus:  # assigned by the worker, so it wins over the user's env
        env[b"CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in spec.gpus).encode()
    for key, value in spec.extra_env.items():
        env[os.fsencode(key)] = os.fsencode(value)
    env[b"BANYAN_TASK_ID"] = os.fsencode(spec.task_id)
    env[b"BANYAN_ATTEMPT"] = str(spec.attempt).encode()
    return env


class Tail:
    """The last ``limit`` bytes of a stream, and how many came before them.

    The buffer may grow to twice the limit before it is trimmed, so trimming
    costs O(1) per byte however small the chunks are.
    """

    __slots__ = ("_buffer", "limit", "total_bytes")

    def __init__(self, limit: int) -> None:
        self._buffer = bytearray()
        self.limit = limit
        self.total_bytes = 0

    def add(self, chunk: bytes) -> None:
        self.total_bytes += len(chunk)
        self._buffer += chunk
        if len(self._buffer) > 2 * self.limit:
            del self._buffer[: len(self._buffer) - self.limit]

    def value(self) -> bytes:
        kept = len(self._buffer) if len(self._buffer) <= self.limit else self.limit
        return bytes(self._buffer[len(self._buffer) - kept :])

    @property
    def dropped_bytes(self) -> int:
        return self.total_bytes - min(len(self._buffer), self.limit)
