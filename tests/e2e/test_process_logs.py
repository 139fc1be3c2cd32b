"""The server's and the worker's logs, from real processes started with
``--log-format json`` (issue 15, item 5): every stderr line is one JSON
object, the access log is on by default (off with ``access_log``), and the
lifecycle is there at INFO: start (address, database, version) and stop of
the server; a worker's connection, join, leave and loss; the worker's
connect, claims (DEBUG), disconnect and the reason it exits."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed import FAST, SERVER, WORKER, Http, clean_env, free_port, wait_for

pytestmark = pytest.mark.slow
WAIT_S = 30


class Run:
    """Processes started by one test, ended by PID."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_file = tmp / "client.json"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{name}.err").open("wb") as err:
            proc = subprocess.Popen(
                args,
                env=clean_env(BANYAN_CLIENT_FILE=str(self.client_file), **env),
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=self.tmp,
            )
        self.procs[name] = proc
        return proc

    def server(self, **env: str) -> None:
        settings = {f"BANYAN_{k.upper()}": str(v) for k, v in FAST.items()}
        db = str(self.tmp / "b.db")
        args = [str(SERVER), "--db", db, "--port", str(self.port), "--log-format", "json"]
        self.start("server", args, **settings, **env)

        def up() -> bool:
            assert self.procs["server"].poll() is None, self.text("server")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as resp:
                    return resp.status == 200 and self.client_file.exists()
            except OSError:
                return False

        wait_for(up, WAIT_S, "the server to start")

    @property
    def http(self) -> Http:
        return Http(self.url, json.loads(self.client_file.read_text())["token"])

    def text(self, name: str) -> str:
        return (self.tmp / f"{name}.err").read_text(errors="replace")

    def lines(self, name: str) -> list[dict[str, Any]]:
        """Every stderr line of ``name``, each parsed as one JSON object."""
        return [json.loads(line) for line in self.text(name).splitlines()]

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=WAIT_S)


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    the_run = Run(tmp_path)
    yield the_run
    the_run.close()
    for name in the_run.procs:  # shown by pytest only when the test failed
        print(f"----- {name} -----\n{the_run.text(name)[-3000:]}")


def messages(lines: list[dict[str, Any]], logger: str | None = None) -> list[str]:
    return [line["message"] for line in lines if logger is None or line["logger"] == logger]


def test_json_logs_of_a_server_and_a_worker(run: Run) -> None:
    run.server()
    http = run.http
    (task_id,) = http.submit([{"command": "echo hi", "state": "available"}])
    worker = run.start("w1", [str(WORKER), "--name", "w1", "--burst", "-v", "--log-format", "json"])
    assert worker.wait(timeout=WAIT_S) == 0, run.text("w1")
    assert http.task(task_id)["execution"]["exit_status"] == "success"

    lost = run.start("w2", [str(WORKER), "--name", "w2", "--log-format", "json"])
    wait_for(lambda: "w2" in http.workers(), WAIT_S, "w2 to join")
    lost.send_signal(signal.SIGKILL)
    lost.wait(timeout=WAIT_S)
    wait_for(
        lambda: any("worker w2 lost" in m for m in messages(run.lines("server"))),
        WAIT_S,
        "the server to log w2 as lost",
    )
    run.procs["server"].send_signal(signal.SIGTERM)
    assert run.procs["server"].wait(timeout=WAIT_S) == 0

    server = run.lines("server")  # every line parses as JSON
    assert all({"time", "level", "logger", "message"} <= set(line) for line in server)
    start = next(line for line in server if "listening on" in line["message"])
    assert start["level"] == "INFO" and start["address"] == run.url
    assert start["db"] == str(run.tmp / "b.db") and start["version"]
    access = [line for line in server if line["logger"] == "aiohttp.access"]
    health = [a for a in access if a["first_request_line"] == "GET /health HTTP/1.1"]
    assert health and health[0]["response_status"] == 200 and health[0]["level"] == "INFO"
    assert any(a["first_request_line"].startswith("POST /tasks ") for a in access)
    said = messages(server)
    for wanted in (
        "worker connection from 127.0.0.1",
        "worker w1 joined",
        "worker w1 left",
        "worker w2 joined",
        "worker w2 disconnected",
        "worker w2 lost",
        "stopping",
        "stopped",
    ):
        assert any(m.startswith(wanted) for m in said), (wanted, said)

    w1 = run.lines("w1")
    said = messages(w1)
    for wanted in ("connected to", f"claimed task {task_id}", "disconnected from", "exiting"):
        assert any(m.startswith(wanted) for m in said), (wanted, said)
    claimed = next(line for line in w1 if line["message"].startswith("claimed"))
    assert claimed["level"] == "DEBUG"
    assert said[-1] == "exiting (code 0): nothing left to run (--burst)"


def test_the_access_log_can_be_turned_off(run: Run) -> None:
    run.server(BANYAN_ACCESS_LOG="false")
    run.http.ok("GET", "/tasks")
    run.procs["server"].send_signal(signal.SIGTERM)
    assert run.procs["server"].wait(timeout=WAIT_S) == 0
    server = run.lines("server")
    assert any(line["message"] == "stopped (database closed)" for line in server)
    assert not [line for line in server if line["logger"] == "aiohttp.access"]


def test_a_stopped_worker_says_why_it_exits(run: Run) -> None:
    run.server()
    worker = run.start("w1", [str(WORKER), "--name", "w1", "--log-format", "json"])
    wait_for(lambda: "w1" in run.http.workers(), WAIT_S, "w1 to join")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=WAIT_S) == 0
    said = messages(run.lines("w1"))
    assert said[-1] == "exiting (code 0): SIGTERM", said
