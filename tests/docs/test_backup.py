"""The backup and restore procedure of ``docs/operations/backups.rst``, run as
documented against a real ``banyan-server`` process that keeps taking writes:
``docs/operations/files/banyan-backup`` (``VACUUM INTO``) and the ``sqlite3``
shell's ``.backup`` make consistent copies, and a server started on a
restored copy serves exactly what the copy holds."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import Cluster, Http, clean_env, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sqlite3") is None, reason="no sqlite3 shell"),
]

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "operations" / "files" / "banyan-backup"
SEED = 3000
BATCH = 50
MAX_BATCHES = 400  # the writer stops at this bound even if nobody tells it to


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path)
    yield the_cluster
    the_cluster.close()


class Writer(threading.Thread):
    """Bulk POSTs until told to stop (or MAX_BATCHES); counts acknowledged tasks."""

    def __init__(self, http: Http) -> None:
        super().__init__(daemon=True)
        self.http = Http(http.url, http.token)
        self.stop = threading.Event()
        self.acknowledged = 0

    def run(self) -> None:
        for _ in range(MAX_BATCHES):
            if self.stop.is_set():
                return
            self.http.submit([{"command": "true", "name": "load"} for _ in range(BATCH)])
            self.acknowledged += BATCH


def tasks_in(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        (count,) = conn.execute("SELECT count(*) FROM tasks").fetchone()
        (events,) = conn.execute(
            "SELECT count(*) FROM events WHERE type = 'task.created'"
        ).fetchone()
        assert count == events  # each task and its event committed together, or neither
        return int(count)


def test_online_backup_under_writes_and_restore(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    http = cluster.http
    for _ in range(SEED // 1000):
        http.submit([{"command": "true", "name": "seed"} for _ in range(1000)])
    backups = tmp_path / "backups"
    backups.mkdir()

    writer = Writer(http)
    writer.start()
    try:
        wait_for(lambda: writer.acknowledged >= 2 * BATCH, 60, "the writer to be writing")
        # What the docs' nightly script does, while the writer keeps committing.
        env = clean_env(BANYAN_DB=str(cluster.db), BANYAN_BACKUP_DIR=str(backups))
        out = subprocess.run(
            ["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120, check=True
        )
        dot_backup = tmp_path / "dot-backup.db"
        subprocess.run(
            ["sqlite3", str(cluster.db), f".backup {dot_backup}"], check=True, timeout=120
        )
    finally:
        writer.stop.set()
        writer.join(timeout=60)
    assert not writer.is_alive()

    (copy,) = backups.glob("banyan-*.db")
    assert out.stdout.startswith(f"banyan-backup: {copy} (")
    in_copy = tasks_in(copy)
    assert SEED <= in_copy <= SEED + writer.acknowledged
    assert SEED <= tasks_in(dot_backup) <= SEED + writer.acknowledged
    live = http.count()
    assert live == SEED + writer.acknowledged  # the backups took nothing from the server

    # Restore as documented: stop (SIGTERM checkpoints and removes the WAL),
    # put the copy in place with no stale -wal/-shm beside it, start.
    assert cluster.server is not None
    cluster.server.popen.send_signal(signal.SIGTERM)
    assert cluster.server.popen.wait(timeout=60) == 0
    assert not Path(f"{cluster.db}-wal").exists()
    os.replace(cluster.db, tmp_path / "before-restore.db")
    for suffix in ("-wal", "-shm"):
        Path(f"{cluster.db}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(copy, cluster.db)
    cluster.restart_server()
    assert cluster.http.count() == in_copy
    assert cluster.http.get("/health").body["schema_version"] >= 1
