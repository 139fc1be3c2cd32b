"""Disk full: writes refused with 507 in Eve's shape and never half applied,
reads served meanwhile, no event for a refused write, writes back as soon as
the space is, workers' claims and reports carried over the gap.

Three ways to run out of space, each real: a small tmpfs (needs the right to
mount: skipped without it), the server's ``RLIMIT_FSIZE`` lowered from outside
(no privilege needed; EFBIG → ``SQLITE_IOERR_WRITE``), and SQLite's own
``PRAGMA max_page_count`` on the server's writer connection in an in-process
server (``SQLITE_FULL`` in the middle of a statement).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from banyan.errors import InsufficientStorage, Unavailable
from banyan.tokens import basic_auth_header
from server.keys import STORE
from server.stores.sqlite.db import DISK_FULL, Database, map_sqlite_error
from server.stores.sqlite.store import SqliteStore
from testbed import Cluster, wait_for
from tests.conftest import Api
from tests.faults import diskfull

# --- the scenario of tests/faults/diskfull.py, small ------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fault", diskfull.FAULTS)
def test_disk_full_scenario(tmp_path: Path, fault: str) -> None:
    if fault not in diskfull.available_faults(tmp_path):
        pytest.skip(f"{fault} is not possible here (mounting a tmpfs needs root)")
    result = diskfull.run(tmp_path / fault, 600, fault=fault)
    print(json.dumps(result, indent=1))
    assert result["status_refused"] == 507, result
    assert result["refused_body"] == {
        "_status": "ERR",
        "_error": {"code": 507, "message": result["refused_message"]},
    }
    assert "disk" in str(result["refused_message"]), result
    assert result["acknowledged_lost"] == 0, result
    assert result["unacknowledged_found"] == 0, result
    assert result["reads_served"] is True, result
    # /health is honest: degraded (503) while writes fail, naming why; ok after.
    status, health, reasons = result["health_while_full"]  # type: ignore[misc]
    assert (status, health) == (503, "degraded"), result
    assert any("full" in r or "failing" in r for r in reasons), result
    if fault == "tmpfs":
        assert any("is full" in r for r in reasons), result
    assert result["health_after"] == (200, "ok", []), result
    assert result["recovered"] is True, result
    assert result["integrity"] == "ok", result
    assert result["patch_status_while_full"] == 507, result
    assert result["refused_patch_left_no_trace"] is True, result
    assert result["events_for_unacknowledged"] == 0, result
    assert result["acknowledged_without_event"] == 0, result
    assert set(result["statuses"]) <= {201, 507}, result  # type: ignore[arg-type]


# --- in process: SQLite's max_page_count on the writer connection -----------------------


def store_of(api: Api) -> SqliteStore:
    store = api.client.server.app[STORE]
    assert isinstance(store, SqliteStore)
    return store


async def cap_pages(api: Api, extra: int | None) -> None:
    """Let the database grow by ``extra`` pages at most (None: no cap)."""

    def cap(conn: sqlite3.Connection) -> None:
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        limit = 2**31 if extra is None else pages + extra
        conn.execute(f"PRAGMA max_page_count = {limit}").fetchone()

    await store_of(api).db.write(cap)


def padded(count: int, name: str = "t") -> list[dict[str, Any]]:
    return [
        {"command": "true", "name": f"{name} {i}", "env": {"PAD": "x" * 4000}} for i in range(count)
    ]


async def total(api: Api) -> int:
    resp = await api.get("/tasks", params={"max_results": "1"})
    assert resp.status == 200, resp
    return int(resp.body["_meta"]["total"])


async def test_a_full_disk_refuses_writes_with_507_and_keeps_serving_reads(api: Api) -> None:
    kept = await api.submit(command="true", name="before")
    await cap_pages(api, 0)
    resp = await api.post("/tasks", padded(50))
    assert resp.status == 507, resp
    assert resp.body == {"_status": "ERR", "_error": {"code": 507, "message": DISK_FULL}}
    patched = await api.patch(f"/tasks/{kept}", {"env": {"PAD": "y" * 30_000}})
    assert patched.status == 507, patched
    # Reads go on, and show nothing of the refused writes.
    assert await total(api) == 1
    task = await api.task(kept)
    assert task["name"] == "before" and not task.get("env")
    assert (await api.get("/stats")).status == 200
    health = await api.get("/health")  # answered, and honest about the writes
    assert health.status == 503 and health.body["status"] == "degraded", health
    assert any("writes have been failing" in r for r in health.body["reasons"]), health
    # Space returns: the next write succeeds, no restart.
    await cap_pages(api, None)
    await api.submit(command="true", name="after")
    assert await total(api) == 2
    health = await api.get("/health")
    assert (health.status, health.body["status"]) == (200, "ok"), health


async def test_a_batch_that_does_not_fit_is_refused_whole_and_the_next_one_commits(
    api: Api,
) -> None:
    seed = await api.submit(command="true", name="seed")
    await cap_pages(api, 40)
    # Concurrent requests share group-commit batches; whatever is acknowledged
    # is there, whatever is refused is not, and nothing else is.
    replies = await asyncio.gather(*(api.post("/tasks", padded(10, f"b{i}")) for i in range(30)))
    statuses = [r.status for r in replies]
    assert set(statuses) <= {201, 507}, statuses
    assert 507 in statuses, statuses
    acked = {item["_id"] for r in replies if r.status == 201 for item in r.body["_items"]}
    found = await api.get("/tasks", params={"max_results": "1000", "projection": '{"_id": 1}'})
    assert {t["_id"] for t in found.body["_items"]} == acked | {seed}
    assert store_of(api).db.failed_batches >= 1
    await cap_pages(api, None)
    after = await api.post("/tasks", padded(10, "after"))
    assert after.status == 201, after
    assert await total(api) == 1 + len(acked) + 10
    assert store_of(api).db.failing_since is None


async def test_the_feed_announces_no_refused_write(api: Api) -> None:
    headers = {"Authorization": basic_auth_header(api.tokens["alice"])}
    ws = await api.client.ws_connect("/events", headers=headers, params={"types": "task.*"})
    try:
        hello = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
        assert hello["type"] == "feed.hello"
        await cap_pages(api, 0)
        for _ in range(3):
            assert (await api.post("/tasks", padded(20))).status == 507
        await cap_pages(api, None)
        good = await api.submit(command="true", name="good")
        event = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
        # The first event after the refusals is the good task's, with the next seq.
        assert event["type"] == "task.created" and event["data"]["_id"] == good, event
        assert event["seq"] == hello["seq"] + 1, (hello, event)
    finally:
        await ws.close()


# --- the group-commit writer itself ----------------------------------------------------


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "w.db")
    await database.open()
    await database.write(lambda c: c.execute("CREATE TABLE t (v TEXT)"))
    yield database
    await database.close()


def insert(value: str) -> Any:
    return lambda conn: conn.execute("INSERT INTO t VALUES (?)", (value,)).rowcount


async def rows(db: Database) -> list[str]:
    return await db.read(lambda c: [v for (v,) in c.execute("SELECT v FROM t ORDER BY v")])


async def test_ops_never_run_outside_a_transaction_sqlite_rolled_back(db: Database) -> None:
    # On some SQLITE_FULL and SQLITE_IOERR cases SQLite rolls the whole
    # transaction back by itself. An op in that position then raises an error
    # that alone would only undo its savepoint; the rest of the batch must not
    # go on committing op by op while "a" was silently undone.
    def undone_then_fails(conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK")
        raise sqlite3.IntegrityError("constraint failed")

    results = await asyncio.gather(
        db.write(insert("a")),
        db.write(undone_then_fails),
        db.write(insert("c")),
        return_exceptions=True,
    )
    assert all(isinstance(r, Exception) for r in results), results
    assert await rows(db) == []
    assert await db.write(insert("d")) == 1
    assert await rows(db) == ["d"]


async def test_an_op_failing_on_its_own_is_undone_alone(db: Database) -> None:
    def fails(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES ('b')")
        raise sqlite3.IntegrityError("constraint failed")

    results = await asyncio.gather(
        db.write(insert("a")), db.write(fails), db.write(insert("c")), return_exceptions=True
    )
    assert results[0] == 1 and results[2] == 1, results
    assert isinstance(results[1], Exception), results
    assert await rows(db) == ["a", "c"]


async def test_a_full_batch_gets_one_error_per_request_and_the_writer_goes_on(
    db: Database,
) -> None:
    def cap(extra: int | None) -> Any:
        def run(conn: sqlite3.Connection) -> None:
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count = {2**31 if extra is None else pages + extra}")

        return run

    await db.write(cap(0))
    results = await asyncio.gather(
        *(db.write(insert(str(i) * 5000)) for i in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, InsufficientStorage) for r in results), results
    assert len({id(r) for r in results}) == len(results)  # not one instance shared
    assert await rows(db) == []
    await db.write(cap(None))
    assert await db.write(insert("ok")) == 1


def error_with(code: int, message: str) -> sqlite3.Error:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (sqlite3.SQLITE_FULL, 507),
        (sqlite3.SQLITE_IOERR | (3 << 8), 507),  # SQLITE_IOERR_WRITE
        (sqlite3.SQLITE_IOERR | (4 << 8), 507),  # SQLITE_IOERR_FSYNC
        (sqlite3.SQLITE_BUSY, 503),
        (sqlite3.SQLITE_LOCKED, 503),
        (sqlite3.SQLITE_READONLY, 503),
        (sqlite3.SQLITE_CORRUPT, 500),
    ],
)
def test_sqlite_failures_map_by_result_code(code: int, status: int) -> None:
    error = map_sqlite_error(error_with(code, "whatever the text says"))
    assert error.status == status
    if status == 507:
        assert "the write was not applied" in error.message
    if status == 503:
        assert isinstance(error, Unavailable)


def test_a_real_sqlite_full_error_maps_to_507(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db")
    conn.execute("CREATE TABLE t (v TEXT)")
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(sqlite3.OperationalError) as caught:
        conn.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
    conn.close()
    error = map_sqlite_error(caught.value)
    assert (error.status, error.message) == (507, DISK_FULL)


# --- workers across a full disk (real processes) ---------------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path)
    yield the_cluster
    the_cluster.close()
    for proc in [the_cluster.server, *the_cluster.workers.values()]:
        if proc is not None:
            print(f"----- {proc.name} -----\n{proc.log_text()}")


@pytest.mark.slow
def test_workers_claims_and_results_wait_out_a_full_disk(cluster: Cluster, tmp_path: Path) -> None:
    if "fsize" not in diskfull.available_faults(tmp_path):
        pytest.skip("needs prlimit")
    disk = tmp_path / "disk"
    disk.mkdir()
    cluster.db = disk / "b.db"
    cluster.start_server()
    space = diskfull.Space("fsize", disk, cluster, 0)
    running = cluster.http.submit(
        [{"command": "sleep 1.5", "name": f"r{i}", "state": "available"} for i in range(2)]
    )
    cluster.start_worker("w1", cores=2)
    cluster.wait_connected("w1")
    wait_for(
        lambda: all(cluster.http.task(t)["state"] == "running" for t in running), 20, "running"
    )
    queued = cluster.http.submit(
        [{"command": "true", "name": f"q{i}", "state": "available"} for i in range(4)]
    )
    space.take()  # nothing may grow: the results of r0, r1 and the claims of q* are refused
    assert cluster.http.request("POST", "/tasks", [{"command": "true"}] * 200).status == 507
    server = cluster.server
    assert server is not None
    # Refused, and refused again after a pause: the gateway keeps trying.
    wait_for(lambda: "trying again in 1.0 s" in server.log_text(), 30, "a retried write")
    assert {cluster.http.task(t)["state"] for t in running} == {"running"}
    space.give_back()
    for task_id in running + queued:
        task = cluster.http.wait_state(task_id, "terminated", timeout=30)
        assert task["execution"]["exit_status"] == "success", task
        history = cluster.http.history(task_id)
        assert [(h["worker"], h["exit_status"]) for h in history] == [("w1", "success")]
    assert cluster.workers["w1"].popen.poll() is None
