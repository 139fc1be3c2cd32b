"""Shared by the end-to-end worker and gateway tests: a real ``banyan-server``
process with fast liveness settings, real ``banyan-worker`` processes, a tiny
synchronous HTTP client, and bounded polls.

Every process started here is remembered by PID and ended by PID (kill +
wait) in :meth:`Cluster.close`, together with whatever it left behind (its
descendants, found by PID before it is killed).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from banyan.tokens import basic_auth_header

BIN = Path(sys.executable).parent
SERVER = BIN / "banyan-server"
WORKER = BIN / "banyan-worker"
POLL_S = 0.05
T = TypeVar("T")

# Fast liveness for tests; the worker learns heartbeat and server timeout from
# the server's welcome frame.
FAST = {"worker_timeout_s": 3, "heartbeat_interval_s": 0.5, "server_timeout_s": 5}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], T], timeout: float, what: str = "condition", interval: float = POLL_S
) -> T:
    """Poll ``condition`` every ``interval`` s until it returns something truthy
    (returned) or ``timeout`` s have passed (AssertionError with the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any BANYAN_* variable of the caller's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANYAN_")}
    env.update(extra)
    return env


@dataclass
class Response:
    status: int
    body: Any

    def __repr__(self) -> str:
        return f"<{self.status} {json.dumps(self.body)[:600]}>"


class Http:
    """Blocking JSON requests against the server, authenticated with ``token``."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float = 30,
    ) -> Response:
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode(
                {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
            )
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", basic_auth_header(self.token))
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, text = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read()
            exc.close()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text.decode(errors="replace")
        return Response(status, parsed)

    def get(self, path: str, **params: Any) -> Response:
        return self.request("GET", path, params=params or None)

    def ok(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        resp = self.request(method, path, body, params=params or None)
        assert 200 <= resp.status < 300, (method, path, resp)
        return resp.body

    # --- tasks ------------------------------------------------------------------

    def submit(self, tasks: list[dict[str, Any]]) -> list[str]:
        body = self.ok("POST", "/tasks", tasks)
        return [item["_id"] for item in body["_items"]]

    def task(self, task_id: str) -> dict[str, Any]:
        return dict(self.ok("GET", f"/tasks/{task_id}"))

    def history(self, task_id: str) -> list[dict[str, Any]]:
        return list(self.ok("GET", f"/tasks/{task_id}/history")["_items"])

    def logs(self, task_id: str) -> dict[str, Any]:
        return dict(self.ok("GET", f"/tasks/{task_id}/logs"))

    def patch(self, task_id: str, changes: dict[str, Any]) -> Response:
        return self.request("PATCH", f"/tasks/{task_id}", changes)

    def workers(self) -> dict[str, dict[str, Any]]:
        return {w["name"]: w for w in self.ok("GET", "/workers")["_items"]}

    def find_all(self, where: dict[str, Any], projection: dict[str, int]) -> list[dict[str, Any]]:
        """Every task matching ``where``, page by page (1,000 a page)."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self.ok(
                "GET",
                "/tasks",
                where=where,
                projection=projection,
                max_results="1000",
                page=str(page),
            )
            out += body["_items"]
            if len(out) >= body["_meta"]["total"] or not body["_items"]:
                return out
            page += 1

    def count(self, where: dict[str, Any] | None = None) -> int:
        params: dict[str, Any] = {"max_results": "1"}
        if where is not None:
            params["where"] = where
        return int(self.ok("GET", "/tasks", **params)["_meta"]["total"])

    def wait_state(
        self, task_id: str, states: str | Iterable[str], timeout: float
    ) -> dict[str, Any]:
        wanted = {states} if isinstance(states, str) else set(states)
        found: dict[str, Any] = {}

        def check() -> bool:
            found.clear()
            found.update(self.task(task_id))
            return found["state"] in wanted

        try:
            wait_for(check, timeout, f"task {task_id} to be {sorted(wanted)}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; task: {found}") from None
        return dict(found)


@dataclass
class Proc:
    """A process started by the cluster, with its log file."""

    popen: subprocess.Popen[bytes]
    log: Path
    name: str
    descendants: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def remember_descendants(self) -> None:
        try:
            kids = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return
        for kid in kids:
            self.descendants.setdefault(kid.pid, kid)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


class Cluster:
    """One server process (fresh database in ``tmp``) and the workers started against it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_file = tmp / "client.json"
        self.db = tmp / "b.db"
        self.server: Proc | None = None
        self.workers: dict[str, Proc] = {}
        self._server_env: dict[str, str] = {}
        self._http: Http | None = None

    # --- the server -------------------------------------------------------------

    def start_server(self, **settings: float) -> None:
        values = {**FAST, **settings}
        self._server_env = clean_env(
            BANYAN_CLIENT_FILE=str(self.client_file),
            **{f"BANYAN_{k.upper()}": str(v) for k, v in values.items()},
        )
        self._launch_server()

    def _launch_server(self) -> None:
        log = self.tmp / "server.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [str(SERVER), "--db", str(self.db), "--port", str(self.port)],
                env=self._server_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.server = Proc(popen, log, "server")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert popen.poll() is None, self.server.log_text()
            if self.client_file.exists():
                try:
                    with urllib.request.urlopen(self.url + "/health", timeout=1) as resp:
                        if resp.status == 200:
                            return
                except OSError:
                    pass
            time.sleep(POLL_S)
        raise AssertionError("server did not start: " + self.server.log_text())

    def kill_server(self) -> None:
        assert self.server is not None
        self.server.popen.send_signal(signal.SIGKILL)
        self.server.popen.wait(timeout=20)

    def restart_server(self) -> None:
        self._launch_server()

    @property
    def token(self) -> str:
        return str(json.loads(self.client_file.read_text())["token"])

    @property
    def http(self) -> Http:
        if self._http is None:
            self._http = Http(self.url, self.token)
        return self._http

    # --- workers ----------------------------------------------------------------

    def start_worker(self, name: str, *args: str, cores: float = 2, memory: str = "4 GiB") -> Proc:
        log = self.tmp / f"worker-{name}.log"
        env = clean_env(BANYAN_CLIENT_FILE=str(self.client_file))
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [str(WORKER), "--name", name, "--cores", str(cores), "--memory", memory, *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,
            )
        proc = Proc(popen, log, name)
        self.workers[name] = proc
        return proc

    def wait_connected(self, *names: str, timeout: float = 15) -> None:
        def check() -> bool:
            for name in names:
                proc = self.workers[name]
                assert proc.popen.poll() is None, f"worker {name} exited: {proc.log_text()}"
            found = self.http.workers()
            return all(
                n in found and found[n]["state"] in ("idle", "busy", "draining") for n in names
            )

        wait_for(check, timeout, f"workers {names} to connect")
        for name in names:
            self.workers[name].remember_descendants()

    # --- the end ----------------------------------------------------------------

    def close(self) -> None:
        procs = list(self.workers.values())
        if self.server is not None:
            procs.append(self.server)
        for proc in procs:
            if proc.popen.poll() is None:
                proc.remember_descendants()
                proc.popen.kill()  # SIGKILL also ends a SIGSTOPped process
            proc.popen.wait(timeout=20)
        # What they left behind (their reaper sidecar, task processes): by PID,
        # and only if it is still the process we saw (same creation time).
        for proc in procs:
            for process in proc.descendants.values():
                _kill(process)


def _kill(process: psutil.Process) -> None:
    try:
        if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
            return  # gone, or its PID now belongs to another process
        process.kill()
        process.wait(timeout=5)
    except (psutil.Error, psutil.TimeoutExpired):
        pass


def processes_with(marker: str) -> list[int]:
    """PIDs of live (non-zombie) processes whose command line contains ``marker``."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        info = process.info
        if info["status"] == psutil.STATUS_ZOMBIE or not info["cmdline"]:
            continue
        if any(marker in part for part in info["cmdline"]):
            found.append(int(info["pid"]))
    return found


def read_marks(path: Path) -> list[list[str]]:
    """The lines a test's commands appended to ``path``, split on whitespace."""
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def processes_with_env(name: str, value: str) -> list[int]:
    """PIDs of live (non-zombie) processes of this user whose environment has
    ``name=value`` (what every process a task starts inherits)."""
    found = []
    for process in psutil.process_iter(["pid", "status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if process.environ().get(name) == value:
                found.append(int(process.info["pid"]))
        except psutil.Error:
            continue  # gone meanwhile, or not ours
    return found
