"""Start-up errors of a real ``banyan-server`` are one line on stderr and a
non-zero exit: no traceback for a read-only data directory, a port in use,
an unreadable or invalid settings file."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import SERVER, Http, Server, clean_env
from tests.faults import diskfull

pytestmark = pytest.mark.slow


def start(tmp: Path, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [str(SERVER), "--port", "0", *args]
    if user is not None:  # root reads any file: drop to an unprivileged user
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    env = clean_env(BANYAN_CLIENT_FILE=str(tmp / "client.json"))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=tmp)


def assert_one_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    print(result.stderr)
    assert result.returncode != 0, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("banyan-server: "), lines
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines
    assert "listening" not in result.stdout, result.stdout


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A data directory holding a database, then remounted read-only."""
    if not diskfull.can_mount_tmpfs(tmp_path):
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "ro"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "banyan-ro", str(where)], check=True)
    try:
        made = subprocess.run(
            [str(SERVER), "token", "create", "--role", "admin", "--name", "a"],
            env=clean_env(BANYAN_DB=str(where / "b.db")),
            capture_output=True,
            timeout=60,
        )
        assert made.returncode == 0, made
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True, timeout=30)


def test_read_only_data_directory(tmp_path: Path, read_only_dir: Path) -> None:
    result = start(tmp_path, "--db", str(read_only_dir / "b.db"))
    assert_one_line(result, str(read_only_dir / "b.db"), "writable")


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = start(tmp_path, "--db", str(tmp_path / "b.db"), "--port", str(port))
    assert_one_line(result, "address already in use")


def test_unreadable_settings_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("port = 5300\n")
    config.chmod(0)
    user = None
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("as root every file is readable, and setpriv is missing")
        user = "65534"
        tmp_path.chmod(0o755)
    result = start(tmp_path, "--config", str(config), "--db", "/tmp/never.db", user=user)
    assert_one_line(result, "Permission denied", str(config))


@pytest.mark.parametrize(
    ("text", "words"),
    [("port = \n", ["invalid settings"]), ("nope = 1\n", ["nope", "invalid settings"])],
    ids=["bad-toml", "unknown-key"],
)
def test_invalid_settings_file(tmp_path: Path, text: str, words: list[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    assert_one_line(start(tmp_path, "--config", str(config)), *words)


def test_a_second_server_on_one_sqlite_file_is_refused_until_the_first_dies(
    tmp_path: Path,
) -> None:
    """Two servers on one SQLite file would each declare the other's workers
    lost; a standby may take over once the first is gone, even by kill -9."""
    first = Server(tmp_path, name="a")
    first.start()
    try:
        second = start(tmp_path, "--db", str(first.db))
        assert_one_line(second, "another banyan-server", f"pid {first.pid}", "PostgreSQL")
        assert second.returncode == 2
        # The token commands are not servers: they run beside it.
        made = subprocess.run(
            [str(SERVER), "token", "list", "--db", str(first.db)],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(),
        )
        assert made.returncode == 0, made
    finally:
        first.kill()
    standby = first.standby(name="b")
    standby.start()
    try:
        assert Http(standby.url, standby.token).get("/health").status == 200
    finally:
        standby.kill()


def test_postgresql_without_its_driver_says_how_to_install_it(tmp_path: Path) -> None:
    # As if asyncpg were not installed (it is an extra: banyan[postgres]).
    code = (
        "import sys; sys.modules['asyncpg'] = None\n"
        "from server.cli import main\n"
        "sys.exit(main(['--db', 'postgresql://u@127.0.0.1:1/x', '--port', '0']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(BANYAN_CLIENT_FILE=str(tmp_path / "client.json")),
        cwd=Path(__file__).parents[2],
    )
    assert_one_line(result, "asyncpg", "banyan[postgres]")
    assert result.returncode == 2
