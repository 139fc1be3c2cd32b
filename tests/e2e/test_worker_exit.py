"""Why ``banyan-worker`` exits, with a real server and real worker processes:
a token the server refuses at connect (401 unknown/revoked, 403 wrong role)
is not a network problem, so the worker says which in one line and exits 77
instead of retrying forever (issue 15, item 4)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import SERVER, Cluster, clean_env

pytestmark = pytest.mark.slow
EXIT_TOKEN_REFUSED = 77
EXIT_WAIT_S = 30


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path)
    the_cluster.start_server()
    yield the_cluster
    the_cluster.close()


def create_token(cluster: Cluster, role: str, name: str) -> str:
    out = subprocess.run(
        [str(SERVER), "token", "create", "--role", role, "--name", name, "--db", str(cluster.db)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def exit_of(cluster: Cluster, name: str, token: str) -> tuple[int, str]:
    proc = cluster.start_worker(name, "--server", cluster.url, "--token", token)
    code = proc.popen.wait(timeout=EXIT_WAIT_S)
    return code, proc.log.read_text()


def test_an_unknown_token_is_refused_once_and_the_worker_exits(cluster: Cluster) -> None:
    code, log = exit_of(cluster, "w-bad", "byn_bad")
    assert code == EXIT_TOKEN_REFUSED, log
    assert "the server refused the token (401): it is unknown or revoked" in log
    assert "cannot reach" not in log  # not reported as a network problem
    assert log.count("refused the token") == 1


def test_a_revoked_token_is_refused(cluster: Cluster) -> None:
    token = create_token(cluster, "worker", "w-old")
    subprocess.run(
        [str(SERVER), "token", "revoke", "w-old", "--db", str(cluster.db)],
        env=clean_env(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    code, log = exit_of(cluster, "w-old", token)
    assert code == EXIT_TOKEN_REFUSED, log
    assert "(401): it is unknown or revoked" in log


def test_a_provider_token_is_the_wrong_role(cluster: Cluster) -> None:
    code, log = exit_of(cluster, "w-provider", create_token(cluster, "provider", "alice"))
    assert code == EXIT_TOKEN_REFUSED, log
    assert "(403): its role cannot run a worker; use a worker or admin token" in log
    assert "cannot reach" not in log
