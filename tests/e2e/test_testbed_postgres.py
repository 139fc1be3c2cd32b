"""The throwaway PostgreSQL cluster of ``testbed.postgres``: missing binaries
are one line saying how to install them (the tests fail on it, never skip),
and a cluster stops by its PID and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from testbed import postgres as pg


def test_missing_binaries_say_how_to_install_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(pg, "DEBIAN_BIN", tmp_path / "nowhere")
    with pytest.raises(pg.PostgresMissing) as caught:
        pg.Postgres().start()
    message = str(caught.value)
    assert "\n" not in message
    assert "initdb" in message and "apt-get install postgresql-15" in message


def test_a_cluster_serves_on_loopback_and_stops_clean() -> None:
    cluster = pg.Postgres(settings=pg.FAST_SETTINGS)
    cluster.start()
    try:
        assert cluster.popen is not None and cluster.dir is not None
        pid, directory = cluster.popen.pid, cluster.dir
        listening = {
            c.laddr.ip
            for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN
        }
        assert listening == {"127.0.0.1"}
        url = cluster.new_database_sync()
        assert url.startswith(f"postgresql://banyan@127.0.0.1:{cluster.port}/")
    finally:
        cluster.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not directory.exists()
