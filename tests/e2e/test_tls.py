"""HTTPS end to end: a real ``banyan-server`` started with ``--tls-cert`` /
``--tls-key`` (a certificate for 127.0.0.1 and localhost from a CA that
``trustme`` makes here), and the clients that trust it through ``--ca-cert``,
``BANYAN_CA_CERT`` or the client file: the CLI, a worker over wss, the event
feed, the TUI's live source. Every failure (no CA, a wrong or unreadable CA,
plain HTTP to the TLS port, a certificate without its key) is one line on
stderr and a non-zero exit status, never a traceback."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from banyan.client import Client
from banyan.client.discovery import discover
from banyan.errors import ServerUnreachable
from server.bootstrap import local_url
from server.settings import Settings
from testbed import BIN, Cluster, clean_env, free_port
from tui.source import LiveSource

pytestmark = pytest.mark.slow

VERIFY_HINT = "pass --ca-cert or fix the server certificate"


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA that signed the server's certificate
    cert: Path  # the server's certificate, for 127.0.0.1 and localhost
    key: Path
    other_ca: Path  # a CA that signed nothing here


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


class TlsCluster(Cluster):
    """``Cluster`` with the server on HTTPS, started with the TLS flags."""

    def __init__(self, tmp: Path, pki: Pki) -> None:
        tls = ["--tls-cert", str(pki.cert), "--tls-key", str(pki.key)]
        super().__init__(tmp, server_args=tls, scheme="https")
        self.pki = pki
        self.other_url = f"https://localhost:{self.port}"  # not the client file's URL


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    here = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    pki = Pki(here / "ca.pem", here / "cert.pem", here / "key.pem", here / "other-ca.pem")
    ca.cert_pem.write_to_path(str(pki.ca))
    issued.private_key_pem.write_to_path(str(pki.key))
    for i, pem in enumerate(issued.cert_chain_pems):
        pem.write_to_path(str(pki.cert), append=i > 0)
    trustme.CA().cert_pem.write_to_path(str(pki.other_ca))
    return pki


@pytest.fixture(scope="module")
def https_urllib(pki: Pki) -> Iterator[None]:
    """``Cluster``'s urllib client (health polls, ``Http``) trusting the test CA."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    urllib.request.install_opener(
        urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
    )
    yield
    urllib.request.install_opener(None)  # type: ignore[arg-type]  # back to the default


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, https_urllib: None
) -> Iterator[TlsCluster]:
    the_cluster = TlsCluster(tmp_path_factory.mktemp("tls"), pki)
    the_cluster.start_server()
    yield the_cluster
    the_cluster.close()
    for proc in [the_cluster.server, *the_cluster.workers.values()]:
        if proc is not None:
            print(f"----- {proc.name} (exit {proc.popen.returncode}) -----\n{proc.log_text()}")


@pytest.fixture
def no_client_file(tmp_path: Path) -> dict[str, str]:
    """An environment without BANYAN_* and with a client file that does not exist."""
    return clean_env(BANYAN_CLIENT_FILE=str(tmp_path / "absent.json"))


def run(program: str, *args: str, env: dict[str, str], timeout: float = 60) -> Run:
    done = subprocess.run(
        [str(BIN / program), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    return Run(done.returncode, done.stdout, done.stderr)


def assert_one_line_error(result: Run, *fragments: str, code: int = 2) -> str:
    """The command failed with ``code`` and a single stderr line holding every fragment."""
    assert result.code == code, result
    assert "Traceback" not in result.err, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# --- the server side ------------------------------------------------------------


def test_client_file_records_the_https_url_and_the_certificate(cluster: TlsCluster) -> None:
    saved = json.loads(cluster.client_file.read_text())
    assert saved["server"] == cluster.url
    assert Path(saved["ca_cert"]) == cluster.pki.cert.resolve()
    assert Path(saved["ca_cert"]).is_absolute()
    # So a local client needs nothing else: it trusts the server's own certificate.
    result = run(
        "banyan", "--json", "workers", env=clean_env(BANYAN_CLIENT_FILE=str(cluster.client_file))
    )
    assert result.code == 0, result
    assert isinstance(json.loads(result.out), list)


@pytest.mark.parametrize(
    ("host", "tls", "url"),
    [
        ("0.0.0.0", True, "https://127.0.0.1:5300"),
        ("::", True, "https://[::1]:5300"),
        ("127.0.0.1", False, "http://127.0.0.1:5300"),
        ("head.example.org", True, "https://head.example.org:5300"),
    ],
)
def test_local_url_replaces_a_wildcard_address(
    pki: Pki, tmp_path: Path, host: str, tls: bool, url: str
) -> None:
    tls_files = {"tls_cert": pki.cert, "tls_key": pki.key} if tls else {}
    settings = Settings(host=host, port=5300, db=tmp_path / "b.db", **tls_files)
    assert local_url(settings) == url


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--tls-cert", "{cert}"], ["--tls-cert needs --tls-key"]),
        (["--tls-key", "{key}"], ["--tls-key needs --tls-cert"]),
        (
            ["--tls-cert", "{missing}", "--tls-key", "{key}"],
            ["cannot read --tls-cert", "No such file"],
        ),
        (
            ["--tls-cert", "{cert}", "--tls-key", "{ca}"],
            ["are not a PEM certificate and its private key"],
        ),
    ],
)
def test_server_refuses_bad_tls_settings(
    pki: Pki, tmp_path: Path, flags: list[str], fragments: list[str]
) -> None:
    names = {"cert": pki.cert, "key": pki.key, "ca": pki.ca, "missing": tmp_path / "nope.pem"}
    argv = [flag.format(**names) for flag in flags]
    env = clean_env(BANYAN_CLIENT_FILE=str(tmp_path / "client.json"))
    result = run(
        "banyan-server", "--db", str(tmp_path / "b.db"), "--port", str(free_port()), *argv, env=env
    )
    assert_one_line_error(result, "banyan-server: ", *fragments)
    assert not (tmp_path / "client.json").exists()


def test_plain_http_to_the_tls_port_fails_cleanly(
    cluster: TlsCluster, no_client_file: dict[str, str]
) -> None:
    plain = cluster.url.replace("https://", "http://")
    result = run("banyan", "--server", plain, "--token", cluster.token, "ls", env=no_client_file)
    assert_one_line_error(result, f"at {plain}", "if it serves HTTPS, use an https:// URL")
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(plain + "/health", timeout=10).close()
    # The server is still there for HTTPS clients.
    assert cluster.http.get("/health").status == 200


# --- the CLI -----------------------------------------------------------------------


def test_cli_with_ca_cert_submits_and_reads(
    cluster: TlsCluster, no_client_file: dict[str, str]
) -> None:
    conn = [
        "--server",
        cluster.other_url,
        "--token",
        cluster.token,
        "--ca-cert",
        str(cluster.pki.ca),
    ]
    submitted = run("banyan", *conn, "submit", "--", "echo", "over-tls", env=no_client_file)
    assert submitted.code == 0, submitted
    task_id = submitted.out.strip().splitlines()[-1]
    # The option also works after the command name, like --server and --json.
    shown = run(
        "banyan",
        "--server",
        cluster.other_url,
        "--token",
        cluster.token,
        "show",
        task_id,
        "--json",
        "--ca-cert",
        str(cluster.pki.ca),
        env=no_client_file,
    )
    assert shown.code == 0, shown
    assert json.loads(shown.out)["task"]["_id"] == task_id
    assert cluster.http.task(task_id)["command"] == "echo over-tls"


@pytest.mark.parametrize("ca", [None, "other_ca"])
def test_cli_without_the_right_ca_gets_a_verify_error(
    cluster: TlsCluster, no_client_file: dict[str, str], ca: str | None
) -> None:
    trust = [] if ca is None else ["--ca-cert", str(getattr(cluster.pki, ca))]
    result = run(
        "banyan",
        "--server",
        cluster.other_url,
        "--token",
        cluster.token,
        *trust,
        "ls",
        env=no_client_file,
    )
    assert_one_line_error(
        result, f"banyan: certificate verify failed for {cluster.other_url}: {VERIFY_HINT}"
    )


def test_ca_from_the_environment(cluster: TlsCluster, no_client_file: dict[str, str]) -> None:
    conn = ["--server", cluster.other_url, "--token", cluster.token]
    good = run("banyan", *conn, "ls", env={**no_client_file, "BANYAN_CA_CERT": str(cluster.pki.ca)})
    assert good.code == 0, good
    # A flag wins over the environment.
    env = {**no_client_file, "BANYAN_CA_CERT": str(cluster.pki.other_ca)}
    flagged = run("banyan", *conn, "--ca-cert", str(cluster.pki.ca), "ls", env=env)
    assert flagged.code == 0, flagged
    wrong = run("banyan", *conn, "ls", env=env)
    assert_one_line_error(wrong, VERIFY_HINT)
    missing = run(
        "banyan", *conn, "ls", env={**no_client_file, "BANYAN_CA_CERT": "/nonexistent/ca.pem"}
    )
    assert_one_line_error(
        missing, "cannot read the CA certificate /nonexistent/ca.pem (BANYAN_CA_CERT)"
    )


def test_the_client_file_ca_is_only_for_its_own_server(cluster: TlsCluster) -> None:
    """The file names https://127.0.0.1:PORT and the server's certificate; asked
    for another URL, a client goes back to the system's trust store."""
    env = clean_env(BANYAN_CLIENT_FILE=str(cluster.client_file))
    own = run("banyan", "--server", cluster.url, "ls", env=env)
    assert own.code == 0, own
    other = run("banyan", "--server", cluster.other_url, "ls", env=env)
    assert_one_line_error(other, f"certificate verify failed for {cluster.other_url}")


def test_unusable_ca_files(
    cluster: TlsCluster, no_client_file: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "empty.pem").write_text("")
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    cases = {
        str(tmp_path / "nope.pem"): "No such file or directory",
        str(tmp_path / "empty.pem"): "holds no PEM certificate: the file is empty",
        str(tmp_path / "junk.pem"): "holds no PEM certificate",
        str(tmp_path): "cannot read the CA certificate",  # a directory
    }
    for path, fragment in cases.items():
        result = run(
            "banyan",
            "--server",
            cluster.other_url,
            "--token",
            cluster.token,
            "--ca-cert",
            path,
            "ls",
            env=no_client_file,
        )
        assert_one_line_error(result, path, "(--ca-cert)", fragment)


def test_events_command_over_wss(cluster: TlsCluster, no_client_file: dict[str, str]) -> None:
    cluster.http.submit([{"command": "true", "name": "feed-cli"}])
    result = run(
        "banyan",
        "--server",
        cluster.other_url,
        "--token",
        cluster.token,
        "--ca-cert",
        str(cluster.pki.ca),
        "events",
        "--since",
        "0",
        "--count",
        "1",
        env=no_client_file,
    )
    assert result.code == 0, result
    frame = json.loads(result.out.splitlines()[0])
    assert frame["seq"] >= 1 and frame["type"].startswith("task.")


# --- the event feed client ------------------------------------------------------------


async def test_event_feed_client_over_wss(cluster: TlsCluster) -> None:
    connection = discover(cluster.other_url, cluster.token, cluster.pki.ca)
    assert connection.ws_base == f"wss://localhost:{cluster.port}"
    async with Client(connection) as client:
        created = await client.submit({"command": "true", "name": "feed-wss"})
        async with asyncio.timeout(30):
            async for frame in client.events(since=0, types=["task.created"]):
                if frame.get("data", {}).get("_id") == created["_id"]:
                    break
    assert frame["type"] == "task.created"


async def test_event_feed_client_without_ca_raises_the_verify_error(cluster: TlsCluster) -> None:
    connection = discover(cluster.other_url, cluster.token)
    async with Client(connection) as client:
        with pytest.raises(ServerUnreachable, match=VERIFY_HINT):
            async with asyncio.timeout(30):  # it reconnects on other errors
                async for _ in client.events(since=0):
                    pass


# --- the worker -------------------------------------------------------------------------


def test_worker_with_ca_cert_runs_a_task_over_wss(
    cluster: TlsCluster, no_client_file: dict[str, str]
) -> None:
    conn = ["--server", cluster.other_url, "--token", cluster.token]
    cluster.start_worker("tls-worker", *conn, "--ca-cert", str(cluster.pki.ca))
    cluster.wait_connected("tls-worker", timeout=30)
    # submit --wait follows the task over the wss event feed.
    result = run(
        "banyan",
        *conn,
        "--ca-cert",
        str(cluster.pki.ca),
        "submit",
        "--wait",
        "--",
        "echo",
        "ran-over-wss",
        env=no_client_file,
        timeout=90,
    )
    assert result.code == 0, (result, cluster.workers["tls-worker"].log_text())
    (task_id,) = [line for line in result.out.split() if len(line) == 24]
    task = cluster.http.task(task_id)
    assert task["state"] == "terminated" and task["execution"]["exit_status"] == "success", task
    assert task["execution"]["worker"] == "tls-worker"
    assert cluster.http.logs(task_id)["stdout"] == "ran-over-wss\n"


def test_worker_without_the_ca_exits_with_the_verify_error(
    cluster: TlsCluster, no_client_file: dict[str, str]
) -> None:
    result = run(
        "banyan-worker",
        "--server",
        cluster.other_url,
        "--token",
        cluster.token,
        "--burst",
        env=no_client_file,
    )
    assert_one_line_error(
        result, f"banyan-worker: certificate verify failed for {cluster.other_url}: {VERIFY_HINT}"
    )


def test_worker_with_an_https_url_for_a_plain_server(
    tmp_path: Path, no_client_file: dict[str, str]
) -> None:
    plain = Cluster(tmp_path)
    try:
        plain.start_server()
        url = plain.url.replace("http://", "https://")
        result = run("banyan-worker", "--server", url, "--token", plain.token, env=no_client_file)
        assert_one_line_error(result, f"TLS handshake with {url} failed (is it serving HTTPS?)")
    finally:
        plain.close()


# --- the TUI ------------------------------------------------------------------------------


async def test_tui_live_source_over_https_and_wss(cluster: TlsCluster) -> None:
    created = cluster.http.submit([{"command": "true", "name": "tui-tls"}])
    connection = discover(cluster.other_url, cluster.token, cluster.pki.ca)
    async with LiveSource(connection) as source:
        snapshot = await source.snapshot()
        assert created[0] in {t["_id"] for t in snapshot.tasks}
        async with asyncio.timeout(30):
            async for frame in source.events(None):
                assert frame["type"] == "feed.hello"
                break


async def test_tui_live_source_without_ca(cluster: TlsCluster) -> None:
    async with LiveSource(discover(cluster.other_url, cluster.token)) as source:
        with pytest.raises(ServerUnreachable, match=VERIFY_HINT):
            await source.snapshot()
        with pytest.raises(ServerUnreachable, match=VERIFY_HINT):
            async for _ in source.events(None):
                pass


def test_tui_command_without_the_ca_exits_with_the_verify_error(
    cluster: TlsCluster, no_client_file: dict[str, str]
) -> None:
    result = run(
        "banyan-tui", "--server", cluster.other_url, "--token", cluster.token, env=no_client_file
    )
    assert_one_line_error(result, f"banyan-tui: certificate verify failed for {cluster.other_url}")


# --- help ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("program", "options"),
    [
        ("banyan-server", ["--tls-cert PATH", "--tls-key PATH"]),
        ("banyan", ["--ca-cert PATH", "$BANYAN_CA_CERT"]),
        ("banyan-worker", ["--ca-cert PATH", "$BANYAN_CA_CERT"]),
        ("banyan-tui", ["--ca-cert PATH", "$BANYAN_CA_CERT"]),
    ],
)
def test_help_names_the_tls_options(program: str, options: list[str]) -> None:
    result = run(program, "--help", env=clean_env())
    assert result.code == 0 and not result.err, result
    text = " ".join(result.out.split())
    for option in options:
        assert option in text, (option, result.out)
