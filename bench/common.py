"""What the benchmarks share: start and stop a real ``banyan-server``
subprocess on a private database, the auth header, the machine description,
percentiles, aligned tables, and the figures each benchmark hands to
``bench/all.py`` (``--json PATH``: a :class:`Report`).

Every server listens on 127.0.0.1 on a free port, keeps its database, client
file and log inside the caller's temporary directory, and is stopped by its
own ``Popen`` (SIGTERM, then SIGKILL after 10 s).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import platform
import re
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
COUNTING_LAUNCHER = HERE / "_counting_server.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")

SHARED_CPU_NOTE = (
    "note: the load generator (this process, aiohttp client) and the server share the "
    "same {n} CPU(s); client CPU time is reported next to server CPU time"
)


# --- the server --------------------------------------------------------------------


def server_command() -> list[str]:
    """The ``banyan-server`` console script of the interpreter running the bench."""
    script = Path(sys.executable).parent / "banyan-server"
    if script.exists():
        return [str(script)]
    found = shutil.which("banyan-server")
    if found:
        return [found]
    raise SystemExit(
        f"banyan-server not found next to {sys.executable}; run the bench with the "
        "project's venv Python (.venv/bin/python bench/...)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def auth_header(token: str) -> str:
    return "Basic " + base64.b64encode(f"{token}:".encode()).decode()


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    token: str
    db: Path
    log: Path
    counters_file: Path | None = None
    _log_handle: Any = field(default=None, repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": auth_header(self.token), "Content-Type": "application/json"}

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process, all its threads."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def counters(self, timeout_s: float = 5.0) -> dict[str, int]:
        """Group-commit counters (only for a server started with ``counting=True``)."""
        if self.counters_file is None:
            raise RuntimeError("this server was not started with counting=True")
        self.counters_file.unlink(missing_ok=True)
        self.proc.send_signal(__import__("signal").SIGUSR1)
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

    def stop(self) -> int | None:
        """SIGTERM, wait up to 10 s, then SIGKILL; returns the exit code."""
        code = stop_process(self.proc, self._log_handle, grace_s=10)
        self._log_handle = None
        return code


def stop_process(
    proc: subprocess.Popen[bytes], log_handle: Any = None, *, grace_s: float
) -> int | None:
    """SIGTERM the process this bench started, wait up to ``grace_s``, then
    SIGKILL; close its log file; returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if log_handle is not None:
        log_handle.close()
    return proc.returncode


def start_server(
    tmp: Path,
    *,
    name: str = "b",
    synchronous: str | None = None,
    counting: bool = False,
    timeout_s: float = 30.0,
    env_extra: dict[str, str] | None = None,
) -> Server:
    """A fresh ``banyan-server`` on ``<tmp>/<name>.db``, ready (``/health`` is 200).

    ``counting=True`` runs the same server through ``_counting_server.py``,
    which also dumps the group-commit counters on SIGUSR1.
    """
    tmp = Path(tmp)
    db = tmp / f"{name}.db"
    client_file = tmp / f"{name}-client.json"
    config = tmp / "empty-config.toml"  # so no user settings file is read
    config.write_text("")
    log_path = tmp / f"{name}-server.log"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANYAN_")}
    env["BANYAN_CONFIG"] = str(config)
    env["BANYAN_CLIENT_FILE"] = str(client_file)
    if synchronous:
        env["BANYAN_SYNCHRONOUS"] = synchronous
    env.update(env_extra or {})
    counters_file = None
    if counting:
        counters_file = tmp / f"{name}-counters.json"
        env["BANYAN_BENCH_COUNTERS"] = str(counters_file)
        cmd = [sys.executable, str(COUNTING_LAUNCHER)]
    else:
        cmd = server_command()
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--db", str(db)]
    log_handle = open(log_path, "wb")  # noqa: SIM115 - closed by Server.stop
    proc = subprocess.Popen(cmd, stdout=log_handle, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    url = f"http://127.0.0.1:{port}"
    server = Server(proc, url, "", db, log_path, counters_file, log_handle)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"banyan-server exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"banyan-server did not answer /health within {timeout_s} s")
            time.sleep(0.05)
        data = json.loads(client_file.read_text())
        server.token = data["token"]
        if data.get("server") != url:
            print(f"warning: client file names {data.get('server')}, expected {url}")
    except BaseException:
        server.stop()
        raise
    return server


# --- measuring ---------------------------------------------------------------------


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy (all CPUs, all processes)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def background_cores(seconds: float = 1.0) -> float:
    """How many CPUs other processes keep busy while this one sleeps (the
    machine is shared: a figure above ~0.1 means the measurements are low)."""
    b0, c0 = busy_cpu_seconds(), client_cpu_seconds()
    time.sleep(seconds)
    return max(0.0, (busy_cpu_seconds() - b0) - (client_cpu_seconds() - c0)) / seconds


class Meter:
    """Wall time and CPU over a block: the server's, this process's (the load
    generator), and everything else on the machine ("other")."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.wall_s = self.server_cpu_s = self.client_cpu_s = self.other_cpu_s = 0.0

    def __enter__(self) -> Meter:
        self._s0 = self.server.cpu_seconds()
        self._c0 = client_cpu_seconds()
        self._b0 = busy_cpu_seconds()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._t0
        self.server_cpu_s = self.server.cpu_seconds() - self._s0
        self.client_cpu_s = client_cpu_seconds() - self._c0
        busy = busy_cpu_seconds() - self._b0
        self.other_cpu_s = max(0.0, busy - self.server_cpu_s - self.client_cpu_s)


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks; ``p`` in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def fsync_latency(
    directory: Path, *, overwrite: bool, count: int = 200, max_s: float = 5.0
) -> float:
    """Median seconds for a 4 KiB write + fdatasync in ``directory``: what one WAL
    commit at synchronous=FULL costs the disk, at least. ``overwrite=False``
    appends (a growing WAL: the file size changes too); ``overwrite=True``
    rewrites blocks of a preallocated file (a WAL being reused after a checkpoint)."""
    path = Path(directory) / "fsync-probe"
    times: list[float] = []
    deadline = time.monotonic() + max_s
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        block = b"x" * 4096
        if overwrite:
            os.write(fd, block * count)
            os.fsync(fd)
        for i in range(count):
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            if overwrite:
                os.pwrite(fd, block, i * 4096)
            else:
                os.write(fd, block)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return percentile(times, 50)


# --- describing --------------------------------------------------------------------


def machine() -> list[tuple[str, str]]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    import aiohttp

    return [
        ("cpus (nproc)", f"{usable} (of {os.cpu_count()})"),
        ("cpu model", model),
        ("os", f"{platform.system()} {platform.release()}"),
        ("python", platform.python_version()),
        ("sqlite", sqlite3.sqlite_version),
        ("aiohttp", aiohttp.__version__),
    ]


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def print_machine(title: str) -> None:
    print(f"== {title}")
    rows = machine()
    rows.append(
        ("background load", f"{background_cores():.2f} CPUs busy with other processes (1 s sample)")
    )
    print_table(["machine", ""], rows)
    print(SHARED_CPU_NOTE.format(n=cpu_count()))
    print()


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # nan
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[fmt(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    numeric = [
        all(isinstance(row[i], int | float) for row in rows if i < len(row)) and bool(rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        out = []
        for i, v in enumerate(values):
            out.append(v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]))
        return "  ".join(out).rstrip()

    print(line(list(headers)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))


# --- client processes -------------------------------------------------------------


async def start_child(script: str, *args: str) -> asyncio.subprocess.Process:
    """``python SCRIPT ARGS`` (a bench's own ``--child`` mode) with pipes: it
    answers in JSON lines on stdout and takes commands on stdin."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        script,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=2**28,  # one line may carry every latency sample
    )


async def start_children(
    children: list[asyncio.subprocess.Process],
    script: str,
    url: str,
    token: str,
    *,
    total: int,
    processes: int,
) -> None:
    """Spread ``total`` clients (subscribers, simulated workers) over
    ``processes`` children ``python SCRIPT --child URL TOKEN FIRST COUNT``,
    appending each to ``children`` as it starts, so that the caller's cleanup
    reaps the ones started before a failure."""
    first = 0
    for i in range(processes):
        count = total // processes + (i < total % processes)
        children.append(await start_child(script, "--child", url, token, str(first), str(count)))
        first += count


async def read_json_line(proc: asyncio.subprocess.Process, timeout_s: float) -> dict[str, Any]:
    """The child's next JSON line, waiting at most ``timeout_s``."""
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout_s)
    if not line:
        raise RuntimeError(f"child process {proc.pid} exited with {await proc.wait()}")
    result: dict[str, Any] = json.loads(line)
    return result


async def tell(proc: asyncio.subprocess.Process, line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line.encode() + b"\n")
    await proc.stdin.drain()


async def reap(children: Sequence[asyncio.subprocess.Process], timeout_s: float = 10.0) -> None:
    """Wait for the children this bench started; SIGKILL one still running after ``timeout_s``."""
    for child in children:
        if child.returncode is None:
            try:
                await asyncio.wait_for(child.wait(), timeout_s)
            except TimeoutError:
                child.kill()
                await child.wait()


# --- figures for bench/all.py ------------------------------------------------------


@dataclass
class Figure:
    """One headline number, with its target when the issues set one."""

    name: str
    value: float | None
    unit: str
    at_least: float | None = None
    at_most: float | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        """None when there is no target (or no value)."""
        if self.value is None or self.value != self.value:
            return None if self.at_least is None and self.at_most is None else False
        if self.at_least is not None:
            return self.value >= self.at_least
        if self.at_most is not None:
            return self.value <= self.at_most
        return None

    @property
    def target(self) -> str:
        if self.at_least is not None:
            return f">= {fmt(float(self.at_least))} {self.unit}"
        if self.at_most is not None:
            return f"<= {fmt(float(self.at_most))} {self.unit}"
        return ""


@dataclass
class Report:
    """The figures of one benchmark run, written as JSON for ``bench/all.py``."""

    benchmark: str
    quick: bool = False
    figures: list[Figure] = field(default_factory=list)

    def add(
        self,
        name: str,
        value: float | None,
        unit: str,
        *,
        at_least: float | None = None,
        at_most: float | None = None,
        note: str = "",
    ) -> None:
        number = None if value is None else float(value)
        self.figures.append(Figure(name, number, unit, at_least, at_most, note))

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "quick": self.quick,
            "machine": dict(machine()),
            "figures": [
                {
                    "name": f.name,
                    "value": None if f.value is None or f.value != f.value else f.value,
                    "unit": f.unit,
                    "at_least": f.at_least,
                    "at_most": f.at_most,
                    "met": f.met,
                    "note": f.note,
                }
                for f in self.figures
            ],
        }

    def write(self, path: Path | None) -> None:
        """Write the figures to ``path`` (``--json``); nothing when it is None."""
        if path is not None:
            Path(path).write_text(json.dumps(self.as_dict(), indent=2) + "\n")


def add_json_option(parser: Any) -> None:
    """``--json PATH``: where the benchmark writes its headline figures."""
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the headline figures (with targets) to PATH as JSON (bench/all.py)",
    )


# --- profiling a server -------------------------------------------------------------


def start_py_spy(
    pid: int, out: Path, *, duration_s: float, rate_hz: int = 200
) -> subprocess.Popen[bytes]:
    """``py-spy record`` on ``pid`` (a server this bench started) for
    ``duration_s``, writing collapsed stacks to ``out`` (read them with
    :func:`top_frames`); py-spy stops by itself after the duration."""
    spy = Path(sys.executable).parent / "py-spy"
    cmd = [str(spy) if spy.exists() else "py-spy", "record", "--pid", str(pid)]
    cmd += ["--duration", str(max(1, round(duration_s))), "--rate", str(rate_hz)]
    cmd += ["--format", "raw", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top_frames(raw: Path, *, top: int = 25, own: bool = True) -> list[tuple[str, float]]:
    """From py-spy's collapsed stacks: the functions with the most samples,
    as (function, % of samples); ``own`` = the innermost frame only, else any
    frame on the stack (cumulative)."""
    counts: dict[str, int] = {}
    total = 0
    for line in Path(raw).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")
        total += int(n)
        chosen = frames[-1:] if own else set(frames)
        for frame in chosen:
            name = re.sub(r":\d+\)$", ")", frame)  # per function, not per line
            name = re.sub(r" \(/\S*/(site-packages|python3\.\d+|main)/", " (", name)
            counts[name] = counts.get(name, 0) + int(n)
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return [(name, 100 * n / total) for name, n in ranked] if total else []
