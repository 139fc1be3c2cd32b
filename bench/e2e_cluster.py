"""The processes of the end-to-end benchmark (``bench/throughput.py``): a
server and two ``banyan-worker`` processes from the harness
(:class:`testbed.Cluster`), the CPU each used and its reaper sidecar's, and
the same server or worker under cProfile for ``--profile``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

import testbed
from bench import measure, servers
from testbed import Proc

ROOT = Path(__file__).resolve().parents[1]
WORKERS = ("bw1", "bw2")
WORKER_CORES = 2


# --- processes -----------------------------------------------------------------------


def proc_cpu(pid: int) -> tuple[float, float]:
    """(own user+sys, reaped children's user+sys) CPU seconds of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / measure.CLK_TCK
    children = (int(fields[13]) + int(fields[14])) / measure.CLK_TCK
    return own, children


def child_pids(pid: int) -> list[int]:
    """Live children of ``pid`` (a scan of /proc: no /proc/PID/task/*/children here)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            found.append(int(entry.name))
    return found


@dataclass
class Worker:
    """A worker process of the harness and the CPU it and its children used."""

    proc: Proc
    profile: Path | None = None
    sidecars: list[int] = field(default_factory=list)  # its reaper, found once it is idle

    @property
    def name(self) -> str:
        return self.proc.name

    def find_sidecars(self) -> None:
        """While idle, the worker's only live child is its reaper sidecar."""
        self.sidecars = child_pids(self.proc.pid)

    def cpu(self) -> tuple[float, float, float]:
        """(agent, reaped task processes, sidecars) CPU seconds so far."""
        try:
            own, children = proc_cpu(self.proc.pid)
        except OSError:
            return float("nan"), float("nan"), float("nan")
        side = 0.0
        for pid in self.sidecars:
            with contextlib.suppress(OSError):
                side += proc_cpu(pid)[0]
        return own, children, side


def worker_command(profile: Path | None) -> list[str] | None:
    """None: the console script; else ``worker.cli`` under cProfile, writing ``profile``."""
    if profile is None:
        return None
    return [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "worker.cli"]


async def wait_idle(
    http: aiohttp.ClientSession,
    server: servers.BenchServer,
    workers: list[Worker],
    timeout_s: float = 30.0,
) -> None:
    """Until every worker is connected with nothing running (``GET /workers``)."""
    names = {w.name for w in workers}
    deadline = time.monotonic() + timeout_s
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        for w in workers:
            if w.proc.popen.poll() is not None:
                raise RuntimeError(f"worker {w.name} exited: {w.proc.log_text(2000)}")
        async with http.get(f"{server.url}/workers", headers=server.headers) as resp:
            data = await resp.json()
        states = {w["name"]: w["state"] for w in data["_items"]}
        if all(states.get(n) == "idle" for n in names):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"workers not idle within {timeout_s} s: {states}")


# ``server.cli.main`` under cProfile: one profile for the event-loop thread, one
# for the SQLite writer thread (every group-commit batch runs there, inside
# ``_apply_batch``) and one for the reader thread (``_in_read_transaction``);
# a cProfile.Profile must not be enabled in two threads at once. The files are
# written when the server exits on SIGTERM.
PROFILED_SERVER = """\
import cProfile, sys
import server.stores.sqlite.db as db
from server.cli import main

OUT = sys.argv.pop(1)
write_prof = cProfile.Profile()
read_prof = cProfile.Profile()

def _wrap(fn, prof):
    def wrapped(*args, **kwargs):
        prof.enable()
        try:
            return fn(*args, **kwargs)
        finally:
            prof.disable()
    return wrapped

db._apply_batch = _wrap(db._apply_batch, write_prof)
db._in_read_transaction = _wrap(db._in_read_transaction, read_prof)
main_prof = cProfile.Profile()
main_prof.enable()
try:
    code = main()
finally:
    main_prof.disable()
    main_prof.dump_stats(OUT + ".main")
    write_prof.dump_stats(OUT + ".write")
    read_prof.dump_stats(OUT + ".read")
sys.exit(code)
"""


def profiled_server(tmp: Path, name: str) -> servers.BenchServer:
    """A bench server run by the profiling launcher (not started yet)."""
    launcher = tmp / "profiled_server.py"
    launcher.write_text(PROFILED_SERVER)
    out = tmp / f"{name}-server.prof"
    command = [sys.executable, str(launcher), str(out)]
    return servers.bench_server(tmp, name=name, synchronous="FULL", command=command)


class Cluster(testbed.Cluster):
    """A fresh server (synchronous FULL) + the two workers, stopped on exit
    (SIGTERM first: a profiled worker or server writes its profile)."""

    def __init__(
        self, tmp: Path, name: str, profile_bw1: bool = False, profile_server: bool = False
    ) -> None:
        if profile_server:
            server = profiled_server(tmp, name)
        else:  # counting: the group-commit counters, read by SIGUSR1 (no other change)
            server = servers.bench_server(tmp, name=name, synchronous="FULL", counting=True)
        super().__init__(tmp, name=name, settings={}, server=server)
        self.bench_server = server
        self.profile_bw1 = profile_bw1
        self.bench_workers: list[Worker] = []

    def __enter__(self) -> Cluster:
        try:
            self.server.start()
            for w in WORKERS:
                prof = (
                    self.tmp / f"{self.name}-{w}.prof" if self.profile_bw1 and w == "bw1" else None
                )
                proc = self.start_worker(
                    w,
                    cores=WORKER_CORES,
                    memory=None,
                    command=worker_command(prof),
                    env={"PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")},
                )
                self.bench_workers.append(Worker(proc, prof))
        except BaseException:
            self.close(grace_s=15)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(grace_s=15)


async def count(http: aiohttp.ClientSession, server: servers.BenchServer, where: str) -> int:
    params = {"where": where, "max_results": "1"}
    async with http.get(f"{server.url}/tasks", params=params, headers=server.headers) as resp:
        data = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"GET /tasks {resp.status}: {data}")
    return int(data["_meta"]["total"])
