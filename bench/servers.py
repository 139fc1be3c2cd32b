"""A ``banyan-server`` for a benchmark: the harness's :class:`testbed.Server`
(a free loopback port, a private database, client file and log in the
caller's temporary directory, no user settings file), plus what only the
benchmarks read: group-commit counters (``counting=True`` runs the server
through ``_counting_server.py``, which dumps them on SIGUSR1) and a wait until
the server's CPU is quiet. Stopped by PID: SIGTERM, then SIGKILL after 10 s.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from testbed import Server

HERE = Path(__file__).resolve().parent
COUNTING_LAUNCHER = HERE / "_counting_server.py"


class BenchServer(Server):
    """A :class:`testbed.Server` with the benchmarks' extra readings."""

    counters_file: Path | None = None

    def counters(self, timeout_s: float = 5.0) -> dict[str, int]:
        """Group-commit counters (only for a server started with ``counting=True``)."""
        if self.counters_file is None:
            raise RuntimeError("this server was not started with counting=True")
        self.counters_file.unlink(missing_ok=True)
        self.popen.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.counters_file.exists():
                return dict(json.loads(self.counters_file.read_text()))
            time.sleep(0.01)
        raise RuntimeError("the counting server did not write its counters")

    def wait_idle(
        self, *, quiet_cpu_s: float = 0.02, window_s: float = 0.5, max_s: float = 60.0
    ) -> float:
        """Wait until the server burns less than ``quiet_cpu_s`` of CPU in
        ``window_s`` (background work such as the event hub catching up
        after a bulk insert is over); bounded by ``max_s``. Returns the wait."""
        start = time.monotonic()
        while time.monotonic() - start < max_s:
            before = self.cpu_seconds()
            time.sleep(window_s)
            if self.cpu_seconds() - before < quiet_cpu_s:
                break
        return time.monotonic() - start


def bench_server(
    tmp: Path,
    *,
    name: str = "b",
    synchronous: str | None = None,
    counting: bool = False,
    env_extra: dict[str, str] | None = None,
    command: Sequence[str] | None = None,
) -> BenchServer:
    """A ``banyan-server`` on ``<tmp>/<name>.db``, not started yet.

    ``counting=True`` runs the same server through ``_counting_server.py``;
    ``command`` replaces the console script (a profiling launcher).
    """
    tmp = Path(tmp)
    env: dict[str, str] = {}
    if synchronous:
        env["BANYAN_SYNCHRONOUS"] = synchronous
    counters_file = None
    if counting:
        counters_file = tmp / f"{name}-counters.json"
        env["BANYAN_BENCH_COUNTERS"] = str(counters_file)
        command = [sys.executable, str(COUNTING_LAUNCHER)]
    env.update(env_extra or {})
    server = BenchServer(tmp, name=name, env=env, command=command)
    server.counters_file = counters_file
    return server


def start_server(
    tmp: Path,
    *,
    name: str = "b",
    synchronous: str | None = None,
    counting: bool = False,
    timeout_s: float = 30.0,
    env_extra: dict[str, str] | None = None,
) -> BenchServer:
    """:func:`bench_server`, started and ready (``/health`` is 200)."""
    server = bench_server(
        tmp, name=name, synchronous=synchronous, counting=counting, env_extra=env_extra
    )
    try:
        server.start(timeout_s=timeout_s)
    except BaseException:
        server.stop()
        raise
    return server
