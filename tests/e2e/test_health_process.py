"""``/health`` of a real ``banyan-server`` is honest about its database
(``server.dbwatch``): the ``-wal`` or database file deleted or replaced under
it, or its file system remounted read-only, make it ``degraded`` (503) with
the reason; a deleted or replaced file also makes it refuse writes (503)
instead of acknowledging what it could not keep, and what was acknowledged
before survives a ``kill -9``. (A full disk: tests/faults/test_disk_full.py.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed import Cluster, wait_for
from tests.faults import diskfull

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path)
    yield the_cluster
    the_cluster.close()


def degraded(cluster: Cluster, words: str) -> dict[str, Any] | None:
    resp = cluster.http.get("/health")
    if resp.status != 503 or resp.body["status"] != "degraded":
        return None
    return dict(resp.body) if any(words in r for r in resp.body["reasons"]) else None


def submit_refused(cluster: Cluster, words: str) -> None:
    resp = cluster.http.request("POST", "/tasks", {"command": "true"})
    assert resp.status == 503, resp
    message = resp.body["_error"]["message"]
    assert "refuses writes" in message and words in message, resp


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_lost_wal_file_is_degraded_refuses_writes_and_loses_nothing(
    cluster: Cluster, how: str
) -> None:
    cluster.start_server()
    acknowledged = cluster.http.submit([{"command": "true", "name": f"t{i}"} for i in range(50)])
    wal = Path(f"{cluster.db}-wal")
    assert wal.stat().st_size > 0  # the tasks are in the WAL, not yet in the database file
    if how == "deleted":
        wal.unlink()
    else:
        shutil.copy(wal, cluster.tmp / "copy")
        os.replace(cluster.tmp / "copy", wal)
    body = wait_for(lambda: degraded(cluster, f"{wal} was {how}"), 10, "health to degrade")
    print(body)
    submit_refused(cluster, f"{wal} was {how}")
    log = cluster.server.log.read_text()
    assert "refusing writes" in log and "Traceback" not in log
    # The WAL's content was checkpointed into the database file when the
    # loss was noticed: a kill -9 now loses none of it.
    cluster.kill_server()
    if how == "replaced":
        wal.unlink()  # the copy is stale by now; the database file has it all
    cluster.restart_server()
    found = {t["_id"] for t in cluster.http.find_all({}, {"_id": 1})}
    assert set(acknowledged) <= found
    assert cluster.http.get("/health").status == 200  # a restart clears it


def test_a_deleted_database_file_is_degraded_and_refuses_writes(cluster: Cluster) -> None:
    cluster.start_server()
    cluster.http.submit([{"command": "true"}])
    cluster.db.unlink()
    body = wait_for(lambda: degraded(cluster, f"{cluster.db} was deleted"), 10, "degraded")
    print(body)
    submit_refused(cluster, "was deleted")


def test_a_read_only_file_system_is_degraded(cluster: Cluster, tmp_path: Path) -> None:
    if not diskfull.can_mount_tmpfs(tmp_path):
        pytest.skip("mounting needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    cluster.db = disk / "b.db"
    cluster.start_server()
    # A read-only bind mount over the data directory: what the server sees at
    # that path is read-only (its open files keep their writable mount, as
    # after an emergency remount of a busy file system).
    subprocess.run(["mount", "--bind", str(disk), str(disk)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(disk)], check=True)
        body = wait_for(lambda: degraded(cluster, "read-only"), 10, "health to degrade")
        print(body)
    finally:
        subprocess.run(["umount", str(disk)], check=True, timeout=30)
    wait_for(lambda: cluster.http.get("/health").status == 200, 10, "health to be ok again")
