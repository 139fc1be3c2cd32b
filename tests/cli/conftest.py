"""Fixtures of the CLI tests: one real ``banyan-server`` process and one real
``banyan-worker`` process per module, discovery pointed at them, and ``cli``:
``banyan.cli.main`` run in this process with its output captured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from banyan.cli import main
from tests.e2e.helpers import Http, clean_env, wait_for
from tests.e2e.test_server_process import ServerProcess

WORKER = Path(sys.executable).parent / "banyan-worker"
WORKER_NAME = "t1"


@dataclass
class Cluster:
    server: ServerProcess
    worker: subprocess.Popen[bytes]
    http: Http
    tmp: Path


@dataclass
class Result:
    code: int
    out: str
    err: str


def _end(popen: subprocess.Popen[bytes], *, grace_s: float) -> None:
    """End one process we started, by PID: SIGTERM, then SIGKILL; then whatever
    it left behind (its task processes), found by PID before it went."""
    try:
        kids = psutil.Process(popen.pid).children(recursive=True)
    except psutil.Error:
        kids = []
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=10)
    for kid in kids:
        try:
            if kid.is_running() and kid.status() != psutil.STATUS_ZOMBIE:
                kid.kill()
                kid.wait(timeout=5)
        except (psutil.Error, psutil.TimeoutExpired):
            pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cli")
    server = ServerProcess(tmp)
    server.start()
    assert server.proc is not None
    log = (tmp / "worker.log").open("ab")
    worker = subprocess.Popen(
        [str(WORKER), "--name", WORKER_NAME, "--cores", "2"],
        env=clean_env(BANYAN_CLIENT_FILE=str(server.client_file)),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )
    try:
        http = Http(server.url, server.token)

        def connected() -> bool:
            assert worker.poll() is None, (tmp / "worker.log").read_text()
            found = http.workers().get(WORKER_NAME)
            return found is not None and found["state"] in ("idle", "busy")

        wait_for(connected, 20, "the worker to connect")
        yield Cluster(server, worker, http, tmp)
    finally:
        _end(worker, grace_s=10)
        log.close()
        _end(server.proc, grace_s=10)


@pytest.fixture
def discovery(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """``banyan`` finds the test server through its client file, as on a laptop."""
    for name in list(os.environ):
        if name.startswith("BANYAN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BANYAN_CLIENT_FILE", str(cluster.server.client_file))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], discovery: None) -> Callable[..., Result]:
    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
