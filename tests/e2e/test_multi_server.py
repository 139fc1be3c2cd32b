"""Two servers on one PostgreSQL database serve one queue (issue 14), with
real server, worker and subscriber processes: workers of both servers race
for the same tasks and none is run twice; a cancel sent through one server
stops a task on the other's worker; both feeds carry the same events in the
same order; a transaction that commits late is not skipped by a subscriber;
one server is killed mid-run and nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from server.domain.pending import BUSY
from server.stores.postgres.db import EVENTS_LOCK
from testbed.cluster import FAST
from testbed.postgres import Postgres
from testbed.procs import stop_all
from tests.e2e.multi_server import Pair, overlapping, runs, two_servers, wait_until
from worker.agent.config import DEFAULT_PREFETCH

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

RACE_TASKS = 2000


@pytest.fixture
async def pair(postgres: Postgres, tmp_path: Path) -> AsyncIterator[Pair]:
    url = await postgres.new_database("multi")
    async with two_servers(tmp_path, url) as started:
        yield started


def same_events(pair: Pair, upto: int) -> None:
    """Every subscriber saw the same events up to seq ``upto``, in seq order, once each."""
    first, *others = [[f for f in s.frames if f["seq"] <= upto] for s in pair.subscribers]
    seqs = [f["seq"] for f in first]
    assert seqs == sorted(set(seqs))
    for other in others:
        assert [(f["seq"], f["type"], f["data"]) for f in other] == [
            (f["seq"], f["type"], f["data"]) for f in first
        ]


async def test_workers_of_two_servers_race_and_no_task_runs_twice(pair: Pair) -> None:
    a, b = pair.servers
    feeds = [pair.subscribe(a), pair.subscribe(b)]
    for i, server in enumerate([a, a, b, b]):
        pair.start_worker(f"w{i}", [server], cores=4)
    await wait_until(lambda: len(pair.http(a).workers()) == 4, 30, "four workers")
    ids: list[str] = []
    for chunk in range(RACE_TASKS // 500):  # through both servers
        http = pair.http(pair.servers[chunk % 2])
        ids += http.submit(
            [{"command": "true", "name": f"t{chunk}-{i}", "state": "available"} for i in range(500)]
        )
    done = {"state": "terminated"}
    await wait_until(lambda: pair.http(b).count(done) == RACE_TASKS, 240, "every task done")
    ran = await runs(pair)
    assert sorted(ran) == sorted(ids)
    twice = {
        task: r for task, r in ran.items() if len(r) != 1 or overlapping(r) or r[0][4] != "success"
    }
    assert twice == {}
    # Each worker's frames were applied in order: no attempt ended while its
    # ``started`` was still unapplied (it would keep ``queued`` set).
    unstarted = await pair.query(
        "SELECT count(*) FROM attempts WHERE queued AND exit_status = $1", "success"
    )
    assert unstarted[0][0] == 0
    workers_used = {r[0][1] for r in ran.values()}
    assert workers_used == {"w0", "w1", "w2", "w3"}  # both servers' workers took part
    # Both feeds: every event, in the same order.
    (marker,) = pair.http(a).submit([{"name": "marker"}])
    last = max(r[0] for r in await pair.query("SELECT max(seq) FROM events"))
    await wait_until(lambda: all(s.saw(last) for s in feeds), 60, f"feeds to reach {last}")
    same_events(pair, last)
    stored = await stored_seqs(pair, 0, last)
    for feed in feeds:  # nothing skipped
        assert [s for s in feed.seqs() if s <= last] == stored
    assert marker in {f["data"].get("_id") for f in feeds[1].frames}


async def test_a_cancel_through_one_server_stops_a_task_on_the_others_worker(
    pair: Pair,
) -> None:
    a, b = pair.servers
    pair.start_worker("wb", [b])
    await wait_until(lambda: "wb" in pair.http(a).workers(), 30, "the worker")
    grace_s = 2
    # Submitted through A: B's worker is woken by the commit A made (work_available).
    (task,) = pair.http(a).submit(
        [{"command": "sleep 60", "max_termination_time": grace_s, "state": "available"}]
    )
    pair.http(a).wait_state(task, "running", 30)
    # /stats, /workers and pending reasons on A see B's worker (the store's view).
    stats = pair.http(a).ok("GET", "/stats")
    assert stats["workers"]["busy"] == 1, stats["workers"]
    assert pair.http(a).workers()["wb"]["state"] == "busy"
    (big,) = pair.http(a).submit(
        [{"command": "true", "requested_resources": {"cores": 2}, "state": "available"}]
    )
    reason = pair.http(a).ok("GET", f"/tasks/{big}/pending_reason")
    assert reason["code"] == BUSY, reason  # not "no connected worker serves queue"
    assert pair.http(a).patch(big, {"state": "cancelled"}).status == 200
    sent = time.monotonic()
    assert pair.http(a).patch(task, {"state": "cancelled"}).status == 200
    await wait_until(
        lambda: pair.http(a).task(task)["state"] == "cancelled", grace_s + 5, "the cancel"
    )
    took = time.monotonic() - sent
    assert took <= grace_s + 1, took
    (run,) = (await runs(pair))[task]
    assert run[1] == "wb" and run[3] is not None


async def test_a_late_commit_is_not_skipped_by_subscribers(pair: Pair) -> None:
    """The outbox trap: a change that started first and commits last must
    still reach a subscriber that has read the events committed meanwhile."""
    a, b = pair.servers
    (slow,) = pair.http(a).submit(
        [{"name": "slow", "command": "true", "queue": "nobody", "state": "available"}]
    )
    feeds = [pair.subscribe(a), pair.subscribe(b)]
    head = max(r[0] for r in await pair.query("SELECT max(seq) FROM events"))
    await wait_until(lambda: all(s.saw(head) for s in feeds), 30, "the subscribers")
    # Hold the task's row: a PATCH through A waits inside its transaction…
    holder = await asyncpg.connect(pair.url)
    try:
        lock = holder.transaction()
        await lock.start()
        await holder.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", slow)
        patch = asyncio.create_task(
            asyncio.to_thread(pair.http(a).patch, slow, {"state": "cancelled"})
        )
        await wait_until(lambda: waiting_on_lock(pair), 30, "the PATCH to wait for the row lock")
        # …while B commits new events, which both subscribers read.
        quick = pair.http(b).submit(
            [{"name": f"quick {i}", "state": "available", "queue": "nobody"} for i in range(5)]
        )
        newest = max(r[0] for r in await pair.query("SELECT max(seq) FROM events"))
        await wait_until(lambda: all(s.saw(newest) for s in feeds), 30, "the quick events")
        assert not patch.done()
        await lock.commit()
    finally:
        await holder.close()
    assert (await patch).status == 200
    last = max(r[0] for r in await pair.query("SELECT max(seq) FROM events"))
    await wait_until(lambda: all(s.saw(last) for s in feeds), 30, "the late event")
    same_events(pair, last)
    late = [f for f in feeds[0].frames if f["data"].get("_id") == slow and f["seq"] > head]
    assert late and late[0]["seq"] > newest  # its seq comes after what committed first
    created = {f["data"]["_id"] for f in feeds[1].frames if f["type"] == "task.created"}
    assert set(quick) <= created
    stored = await stored_seqs(pair, head, last)
    for feed in feeds:
        assert [s for s in feed.seqs() if head < s <= last] == stored


async def test_an_event_whose_seq_commits_late_is_not_skipped(pair: Pair) -> None:
    """The outbox trap at its sharpest: a transaction has taken its ``seq``
    (as every event-writing commit does: under ``EVENTS_LOCK``) and commits
    late; another server's commit meanwhile must not reach a subscriber
    first, or the subscriber would move past the smaller seq for good."""
    a, b = pair.servers
    (task,) = pair.http(a).submit([{"command": "true", "queue": "nobody", "state": "available"}])
    feeds = [pair.subscribe(a), pair.subscribe(b)]
    kind, data = (await pair.query("SELECT type, data FROM events ORDER BY seq DESC LIMIT 1"))[0]
    head = max(r[0] for r in await pair.query("SELECT max(seq) FROM events"))
    await wait_until(lambda: all(s.saw(head) for s in feeds), 30, "the subscribers")
    late = await asyncpg.connect(pair.url)
    try:
        tx = late.transaction()
        await tx.start()
        await late.execute("SELECT pg_advisory_xact_lock($1)", EVENTS_LOCK)
        seq = await late.fetchval(
            "INSERT INTO events (time, type, task_id, data) VALUES ($1, $2, $3, $4) RETURNING seq",
            time.time(),
            kind,
            task,
            data,
        )
        submit = asyncio.create_task(
            asyncio.to_thread(
                pair.http(b).submit,
                [{"name": "meanwhile", "queue": "nobody", "state": "available"}],
            )
        )
        await wait_until(lambda: waiting_on_lock(pair, "advisory"), 30, "B's commit to wait")
        assert not any(s.saw(seq) for s in feeds)
        await tx.commit()
    finally:
        await late.close()
    (meanwhile,) = await submit
    last = max(r[0] for r in await pair.query("SELECT max(seq) FROM events"))
    await wait_until(lambda: all(s.saw(last) for s in feeds), 30, "every event")
    same_events(pair, last)
    for feed in feeds:
        assert seq in feed.seqs()
        created = [f["seq"] for f in feed.frames if f["data"].get("_id") == meanwhile]
        assert created and created[0] > seq


async def waiting_on_lock(pair: Pair, *kinds: str) -> bool:
    """Whether a server's statement waits for a lock of one of ``kinds``
    (by default a row's: the transaction that holds it)."""
    rows = await pair.query(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND wait_event = ANY($1::text[])",
        list(kinds or ("transactionid", "tuple")),
    )
    return bool(rows[0][0])


A_WORKERS = ["wa1", "wa2"]
WORKERS = [*A_WORKERS, "wb1"]
SLOTS = 2  # each worker's cores: it runs two 1-core tasks at once
DONE_BEFORE = 24  # tasks that end, acknowledged, before the kill
# More gated tasks than the three workers can hold (running and prefetched),
# so each worker is certain to fill its slots with them and some stay available.
GATED = len(WORKERS) * (SLOTS + DEFAULT_PREFETCH) + SLOTS
# A gated task says it started, then waits for the test's gate (an flock
# the test holds: ``flock -s`` returns once it is let go).
GATED_COMMAND = 'touch "$D/$BANYAN_TASK_ID" && flock -s "$D/gate" true'


async def test_a_server_killed_mid_run_its_workers_fail_over_and_nothing_runs_twice(
    pair: Pair, tmp_path: Path
) -> None:
    """``kill -9`` of server A: its workers (``--server A --server B``) go on
    through B, their running attempts are resumed and their results accepted."""
    ids, hit = await run_and_kill(pair, tmp_path, failover=True)
    ran = await runs(pair)
    assert {t: r for t, r in ran.items() if len(r) != 1} == {}  # each ran once, accepted
    assert sorted(ran) == sorted(ids)
    assert {t: ran[t][0][1] for t in hit} == hit  # resumed where it ran when A died
    assert await lost_names(pair) == []


async def test_a_server_and_its_workers_killed_another_server_takes_them_over(
    pair: Pair, tmp_path: Path
) -> None:
    """A machine dies with server A and A's workers: B declares each of them
    lost once (none of A's own monitor's doing: A is dead), their attempts
    are abandoned and run again, never twice at once."""
    _, hit = await run_and_kill(pair, tmp_path, failover=False)
    names = await lost_names(pair)
    assert sorted(names) == A_WORKERS  # each exactly once, by B
    assert all(
        f"worker {n} (of a server that stopped) lost" in pair.b.log_text(10**6) for n in names
    )
    ran = await runs(pair)
    # What ran on A's workers when they died ran again, on B's worker.
    assert {t: [r[1] for r in ran[t]] for t in hit} == {t: [w, "wb1"] for t, w in hit.items()}


async def run_and_kill(
    pair: Pair, tmp: Path, *, failover: bool
) -> tuple[list[str], dict[str, str]]:
    """Workers on A (also given B with ``failover``) and on B run
    ``DONE_BEFORE`` tasks to their end, then ``GATED`` tasks that wait on a
    gate; A is killed (with its workers unless ``failover``) while every
    worker runs gated tasks, and the gate opens after (with ``failover``,
    once A's workers are on B: their tasks end through B). Checks that every
    acknowledged task ends in success, no task ran twice at once, and B's
    feed has every event. Returns the ids, and the tasks that ran on A's
    workers when A was killed, with their worker.

    Why a gate: the tasks cannot end before the kill, so the moment waited
    for (tasks running on A's workers) is certain to come and stays until
    the test moves on, however fast or slow the machine. With tasks that end
    by themselves (``sleep``), a test that is late looking finds them done."""
    a, b = pair.servers
    feed_b = pair.subscribe(b)
    for name in A_WORKERS:
        pair.start_worker(name, [a, b] if failover else [a], cores=SLOTS)
    pair.start_worker("wb1", [b], cores=SLOTS)
    await wait_until(lambda: len(pair.http(b).workers()) == 3, 30, "three workers")
    done = {"state": "terminated"}
    ids = pair.http(a).submit(
        [{"command": "true", "name": f"d{i}", "state": "available"} for i in range(DONE_BEFORE)]
    )
    await wait_until(lambda: pair.http(b).count(done) == DONE_BEFORE, 60, "the first tasks")
    marks = tmp / "marks"
    marks.mkdir()
    with (marks / "gate").open("w") as gate:
        fcntl.flock(gate, fcntl.LOCK_EX)  # let go when the file closes, whatever happens
        task = {"command": GATED_COMMAND, "env": {"D": str(marks)}, "state": "available"}
        ids += pair.http(a).submit([{**task, "name": f"g{i}"} for i in range(GATED)])

        hit: dict[str, str] = {}

        def in_flight() -> bool:
            """Every worker runs ``SLOTS`` gated tasks, their processes started
            (they stay so until the gate opens: ``hit`` notes A's workers' ones)."""
            found = pair.http(b).workers()
            running = {name: [t["task"] for t in found[name]["running"]] for name in WORKERS}
            if not all(
                len(tasks) == SLOTS and all((marks / t).exists() for t in tasks)
                for tasks in running.values()
            ):
                return False
            hit.update({t: name for name in A_WORKERS for t in running[name]})
            return True

        await wait_until(in_flight, 60, "gated tasks running on every worker")
        assert a.proc is not None
        doomed = [a.proc] if failover else [a.proc, *(pair.workers[n] for n in A_WORKERS)]
        await asyncio.to_thread(stop_all, doomed, grace_s=0)  # kill -9
        if failover:
            await wait_until(lambda: on_server_of(pair, "wb1", A_WORKERS), 30, "A's workers on B")
    await wait_until(lambda: pair.http(b).count(done) == len(ids), 60, "every task done")
    ran = await runs(pair)
    assert sorted(ran) == sorted(ids)  # every acknowledged task ran…
    assert {t: r for t, r in ran.items() if overlapping(r)} == {}  # …never twice at once
    statuses = {t: r[-1][4] for t, r in ran.items()}
    assert set(statuses.values()) == {"success"}, statuses
    # B's feed has every event, in order, none skipped.
    last = max(r[0] for r in await pair.query("SELECT max(seq) FROM events"))
    await wait_until(lambda: feed_b.saw(last), 30, "B's feed to catch up")
    assert [s for s in feed_b.seqs() if s <= last] == await stored_seqs(pair, 0, last)
    return ids, hit


async def on_server_of(pair: Pair, worker: str, others: list[str]) -> bool:
    """Whether ``others`` are connected to the server ``worker`` is connected to."""
    rows = await pair.query(
        "SELECT name FROM workers WHERE state = 'connected' "
        "AND server = (SELECT server FROM workers WHERE name = $1)",
        worker,
    )
    return set(others) <= {row[0] for row in rows}


async def test_a_silent_worker_is_lost_once_by_its_server_and_a_restart_takes_no_others(
    pair: Pair,
) -> None:
    """Before issue 14, a server that started marked every connected worker
    as heard "now" and declared the other servers' workers lost after
    ``worker_timeout_s``; and any server could declare any worker lost."""
    a, b = pair.servers
    pair.start_worker("wb", [b], "--queue", "b")
    silent = pair.start_worker("ws", [a])
    await wait_until(lambda: len(pair.http(b).workers()) == 2, 30, "two workers")
    (long,) = pair.http(b).submit([{"command": "sleep 60", "state": "available", "queue": "b"}])
    pair.http(b).wait_state(long, "running", 30)
    assert a.proc is not None
    await asyncio.to_thread(a.stop)  # A restarts while B's worker runs a task
    await asyncio.to_thread(a.start)
    await wait_until(lambda: pair.http(a).workers()["ws"]["state"] == "idle", 30, "ws back on A")
    # ws was cut off while A restarted, and may have been declared lost
    # then (by B, rightly, if that took longer than worker_timeout_s): what
    # counts is from here on.
    mark = max(r[0] for r in await pair.query("SELECT max(seq) FROM events"))
    os.kill(silent.pid, signal.SIGSTOP)
    try:
        await wait_until(lambda: lost_names(pair, mark), 30, "ws to be declared lost")
        # Watch for twice the timeout: nothing else is lost, and ws only once.
        timeout_s = float(FAST["worker_timeout_s"])
        watched = time.monotonic()
        await wait_until(lambda: time.monotonic() - watched > 2 * timeout_s, 30, "the watch")
    finally:
        os.kill(silent.pid, signal.SIGCONT)
    assert await lost_names(pair, mark) == ["ws"]  # once, by A (B has no such line)
    assert "wb" not in await lost_names(pair)
    assert "worker ws lost" in a.log_text(100_000)
    assert "worker ws lost" not in b.log_text(100_000)
    assert pair.http(a).task(long)["state"] == "running"
    assert pair.http(a).workers()["wb"]["state"] == "busy"


async def lost_names(pair: Pair, after: int = 0) -> list[str]:
    """The workers of the ``worker.lost`` events after seq ``after``, in order."""
    rows = await pair.query(
        "SELECT data FROM events WHERE type = 'worker.lost' AND seq > $1 ORDER BY seq", after
    )
    return [json.loads(row[0])["name"] for row in rows]


async def stored_seqs(pair: Pair, after: int, upto: int) -> list[int]:
    """The seqs in the events table in ``(after, upto]`` (heartbeats go on being
    written after ``upto``)."""
    rows = await pair.query(
        "SELECT seq FROM events WHERE seq > $1 AND seq <= $2 ORDER BY seq", after, upto
    )
    return [row[0] for row in rows]


RUN_ONCE = (
    'mkdir "$D/$BANYAN_TASK_ID" || touch "$D/twice-$BANYAN_TASK_ID"; '
    "trap 'rmdir \"$D/$BANYAN_TASK_ID\"; exit 143' TERM; sleep 30 & wait"
)


async def test_a_server_cut_off_from_the_database_stops_answering_before_a_takeover(
    pair: Pair, tmp_path: Path
) -> None:
    """Server A can no longer write (its beat waits on a lock), its worker
    still reaches it. B takes the worker's task over once A's beat is old
    enough; A must have stopped answering its worker by then, so the
    worker's lease ran out and it stopped the task before B started it again
    (a directory per running task: a second run finds it and says so)."""
    a, b = pair.servers
    marks = tmp_path / "runs"
    marks.mkdir()
    pair.start_worker("wa", [a])
    await wait_until(lambda: "wa" in pair.http(b).workers(), 30, "wa")
    (task,) = pair.http(a).submit(
        [{"command": RUN_ONCE, "state": "available", "env": {"D": str(marks)}}]
    )
    pair.http(a).wait_state(task, "running", 30)
    pair.start_worker("wb", [b])
    ((server_a,),) = [
        tuple(r) for r in await pair.query("SELECT server FROM workers WHERE name = 'wa'")
    ]
    holder = await asyncpg.connect(pair.url)
    try:
        cut = holder.transaction()
        await cut.start()
        await holder.execute("SELECT 1 FROM servers WHERE id = $1 FOR UPDATE", server_a)

        async def run_by_wb() -> bool:
            rows = await pair.query(
                "SELECT 1 FROM attempts WHERE task_id = $1 AND worker = 'wb' "
                "AND time_terminated IS NULL AND NOT queued",
                task,
            )
            return bool(rows)

        await wait_until(run_by_wb, 30, "B to take the task over")
        await wait_until(lambda: (marks / task).exists(), 10, "the second run")
        await cut.rollback()
    finally:
        await holder.close()
    assert not (marks / f"twice-{task}").exists()  # never two runs at once
    assert await lost_names(pair) == ["wa"]
