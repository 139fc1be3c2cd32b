"""``banyan-server migrate --from PATH.db --to postgresql://...``: a SQLite
database filled by a real server and worker is copied into a fresh database
of the session's PostgreSQL cluster (the real command, a subprocess); a
server started on PostgreSQL then serves the same tasks, histories and logs,
its feed resumes from the old ``seq`` with no gap, an old token still works
and a revoked one is still refused. And the refusals: a non-empty target, a
running server on the source, a bad URL, a missing file: one line, exit 2."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from banyan.client import Client
from banyan.client.discovery import Connection
from testbed import FAST, Cluster, Http, Server
from testbed.postgres import Postgres
from testbed.procs import clean_env
from testbed.server import SERVER as SERVER_BIN

pytestmark = pytest.mark.slow


def migrate(source: Path, target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SERVER_BIN), "migrate", "--from", str(source), "--to", target],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
        check=False,
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path, server=Server(tmp_path, settings=FAST))
    yield the_cluster
    the_cluster.close(grace_s=5)


def _all_tasks(http: Http) -> list[dict[str, Any]]:
    body = http.ok("GET", "/tasks", max_results="1000", sort="_id")
    return list(body["_items"])


async def _events(server: Server, *, since: int, count: int) -> list[dict[str, Any]]:
    """The first ``count`` events after ``since`` (bounded wait)."""
    seen: list[dict[str, Any]] = []
    async with Client(Connection(server=server.url, token=server.token), timeout_s=5) as client:

        async def follow() -> None:
            async for event in client.events(since=since):
                seen.append(event)
                if len(seen) >= count:
                    return

        await asyncio.wait_for(follow(), timeout=30)
    return seen


def test_a_migrated_database_serves_the_same_tasks_feed_and_tokens(
    cluster: Cluster, postgres: Postgres
) -> None:
    cluster.start_server()
    cluster.start_worker("m-w1", cores=2)
    cluster.wait_connected("m-w1")
    http = cluster.http
    parent, child, failing, held = http.submit(
        [
            {"_id": "a" * 24, "command": "echo parent; echo oops >&2", "state": "available",
             "continuations": ["b" * 24]},
            {"_id": "b" * 24, "command": "echo child", "state": "available"},
            {"command": "exit 3", "state": "available", "max_retry_count": 1},
            {"name": "held", "command": "echo later", "requested_resources": {"memory": "1 MiB"}},
        ]
    )  # fmt: skip
    for task_id in (parent, child, failing):
        http.wait_state(task_id, "terminated", timeout=30)
    alice = cluster.server.create_token("provider", "alice")
    bob = cluster.server.create_token("provider", "bob")
    assert Http(cluster.url, alice).get("/tasks").status == 200
    subprocess.run(
        [str(SERVER_BIN), "token", "revoke", "bob", "--db", str(cluster.db)],
        check=True, capture_output=True, env=clean_env(), timeout=60,
    )  # fmt: skip
    before = _all_tasks(http)
    histories = {t["_id"]: http.history(t["_id"]) for t in before}
    logs = {t: http.logs(t) for t in (parent, child, failing)}
    old_events = asyncio.run(_events(cluster.server, since=0, count=1))
    stats_before = http.ok("GET", "/stats")["tasks"]
    cluster.close(grace_s=5)  # the workers and the server: a source in use is refused
    lite = sqlite3.connect(f"file:{cluster.db}?mode=ro", uri=True)
    (last_seq,) = lite.execute("SELECT max(seq) FROM events").fetchone()
    lite.close()

    url = postgres.new_database_sync("migrate")
    done = migrate(cluster.db, url)
    assert done.returncode == 0, done.stderr
    counts = {
        line.split()[0]: line.split()[1:3]
        for line in done.stdout.splitlines()
        if line.split() and line.split()[0] in {"tasks", "attempts", "events", "tokens", "logs"}
    }
    assert counts["tasks"] == ["4", "4"] and counts["attempts"][0] == counts["attempts"][1]
    assert int(counts["attempts"][0]) >= 4  # the failing task ran twice
    assert "MISMATCH" not in done.stdout

    on_pg = Server(cluster.tmp, name="pg", settings=FAST, db_url=url)
    on_pg.client_file.write_text(cluster.server.client_file.read_text())  # the old admin token
    on_pg.start()
    try:
        pg = Http(on_pg.url, on_pg.token)
        after = _all_tasks(pg)
        assert after == before  # every field, _etag, _created and _updated included
        assert {t["_id"]: pg.history(t["_id"]) for t in after} == histories
        assert {t: pg.logs(t) for t in logs} == logs
        assert logs[parent]["stdout"] == "parent\n"
        stats_after = pg.ok("GET", "/stats")["tasks"]
        assert stats_after["by_state"] == stats_before["by_state"]
        # Tokens: an old one works, a revoked one is still refused.
        assert Http(on_pg.url, alice).get("/tasks").status == 200
        assert Http(on_pg.url, bob).get("/tasks").status == 401
        # The feed: the old events as they were, then new ones from the next seq.
        first_seq = old_events[0]["seq"]
        migrated = asyncio.run(_events(on_pg, since=0, count=last_seq - first_seq + 1))
        assert [e["seq"] for e in migrated] == list(range(first_seq, last_seq + 1))
        assert migrated[0] == old_events[0]
        (new,) = pg.submit([{"command": "echo new"}])
        (fresh,) = asyncio.run(_events(on_pg, since=last_seq, count=1))
        assert fresh["seq"] == last_seq + 1 and fresh["data"]["_id"] == new
        # The held task goes on: it runs on a worker of the PostgreSQL server.
        pg.patch(held, {"state": "available"})
        worker_env = {"BANYAN_CLIENT_FILE": str(on_pg.client_file)}
        pg_cluster = Cluster(cluster.tmp, server=on_pg)
        pg_cluster.start_worker("m-w2", env=worker_env)
        try:
            done_task = pg.wait_state(held, "terminated", timeout=30)
            assert done_task["execution"]["worker"] == "m-w2"
            assert done_task["execution"]["exit_status"] == "success"
        finally:
            pg_cluster.close(grace_s=5)
    finally:
        on_pg.stop()


def _one_line_exit_2(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("banyan-server migrate: ")
    for word in words:
        assert word in lines[0], lines[0]


def _small_database(tmp: Path) -> Server:
    server = Server(tmp, settings=FAST)
    server.start()
    Http(server.url, server.token).submit([{"command": "true"}])
    return server


def test_refusals_are_one_line_and_exit_2(tmp_path: Path, postgres: Postgres) -> None:
    server = _small_database(tmp_path)
    url = postgres.new_database_sync("refuse")
    try:
        # The source is in use by a running server: refused (its writes would be lost).
        _one_line_exit_2(migrate(server.db, url), "open in another process", str(server.pid))
    finally:
        server.stop()
    _one_line_exit_2(migrate(tmp_path / "nothing.db", url), "no SQLite database at")
    _one_line_exit_2(migrate(server.db, "mysql://x@127.0.0.1/db"), "postgresql://")
    _one_line_exit_2(migrate(server.db, str(tmp_path / "other.db")), "postgresql://")
    closed = f"postgresql://banyan@127.0.0.1:{postgres.port}/no_such_database"
    _one_line_exit_2(migrate(server.db, closed), "cannot connect", "no_such_database")
    not_banyan = tmp_path / "not-banyan.db"
    not_banyan.write_bytes(b"this is not a database" * 100)
    _one_line_exit_2(migrate(not_banyan, url), "not-banyan.db")
    # A first copy into the empty database succeeds; a second is refused and
    # leaves the target as it was.
    assert migrate(server.db, url).returncode == 0
    before = _table_counts(url)
    _one_line_exit_2(migrate(server.db, url), "not empty")
    assert _table_counts(url) == before


def _table_counts(url: str) -> dict[str, int]:
    import asyncpg

    async def counts() -> dict[str, int]:
        conn = await asyncpg.connect(url)
        try:
            return {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}"))
                    for t in ("tasks", "events", "tokens")}  # fmt: skip
        finally:
            await conn.close()

    return asyncio.run(counts())


def test_a_database_left_by_a_killed_server_is_copied_whole(
    tmp_path: Path, postgres: Postgres
) -> None:
    # kill -9: the last writes are still in the -wal file, not in the database
    # file; the read-only copy reads them from there (the file is not in use).
    server = _small_database(tmp_path)
    Http(server.url, server.token).submit([{"command": "true"} for _ in range(20)])
    server.kill()
    assert Path(f"{server.db}-wal").stat().st_size > 0
    url = postgres.new_database_sync("killed")
    done = migrate(server.db, url)
    assert done.returncode == 0, done.stderr
    assert _table_counts(url)["tasks"] == 21
