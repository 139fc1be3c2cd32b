"""Worker-side fencing, end to end with real processes: a task never runs twice
at once, even when its worker is frozen (SIGSTOP) or cut off from the server
past ``worker_timeout_s``, and a healthy busy worker never loses its lease.

The task (``TASK`` below, run by the worker's ``/bin/sh -c``) appends
``ATTEMPT start PGID T ALIVE`` (``ALIVE``: how many processes of the earlier
attempts' groups are still running, not zombies, at its start), then
``ATTEMPT tick PGID T`` every 20 ms, then ``ATTEMPT end PGID T``, with
``T = time.monotonic()`` (CLOCK_MONOTONIC: one clock for the test, the tasks
and the worker's reaper sidecar, whose log says when it fenced).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from banyan import protocol as p
from banyan.tokens import basic_auth_header
from testbed import Cluster, Proc, wait_for
from tests.e2e.helpers import read_marks
from tests.faults.proxy import Proxy
from worker.usage import live_group_members

pytestmark = pytest.mark.slow

ABANDONED = "abandoned (worker unreachable)"
TIMEOUT_S = 2.0  # worker_timeout_s: lease 1.5 s (SIGTERM), SIGKILL 0.25 s later

TASK = """\
import os, signal, sys, time

marks, ignore_term = sys.argv[1], sys.argv[2] == "1"
attempt = int(os.environ["BANYAN_ATTEMPT"])
if ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL stops it


def alive(pgid):
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            count += fields[0] != "Z" and int(fields[2]) == pgid
    return count


def mark(*words):
    with open(marks, "a") as f:
        f.write(" ".join(str(w) for w in words) + "\\n")


earlier = []
if os.path.exists(marks):
    with open(marks) as f:
        earlier = [int(w[2]) for w in map(str.split, f) if w[1:2] == ["start"]]
mark(attempt, "start", os.getpgrp(), repr(time.monotonic()), sum(map(alive, earlier)))
end = time.monotonic() + (600 if attempt == 1 else 1)
while time.monotonic() < end:
    mark(attempt, "tick", os.getpgrp(), repr(time.monotonic()))
    time.sleep(0.02)
mark(attempt, "end", os.getpgrp(), repr(time.monotonic()))
"""

FENCE_LINE = re.compile(r"lease lapsed at ([0-9.]+) \(now ([0-9.]+)\): (SIGTERM|SIGKILL)")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path)
    yield the_cluster
    the_cluster.close()
    procs = ([the_cluster.server] if the_cluster.server else []) + list(
        the_cluster.workers.values()
    )
    for proc in procs:  # shown by pytest only when the test failed
        print(f"----- {proc.name} (exit {proc.popen.returncode}) -----\n{proc.log_text()}")


class ThreadedProxy:
    """tests/faults/proxy.py's :class:`Proxy` on its own event loop in a thread,
    for these synchronous tests."""

    def __init__(self, upstream_port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        start = asyncio.run_coroutine_threadsafe(Proxy.start(upstream_port), self._loop)
        self.proxy = start.result(timeout=30)

    @property
    def url(self) -> str:
        return self.proxy.url

    def cut(self) -> None:
        self._loop.call_soon_threadsafe(self.proxy.cut, "silent")

    def heal(self) -> None:
        self._loop.call_soon_threadsafe(self.proxy.heal)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.close(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


def submit_fenced_task(cluster: Cluster, tmp_path: Path, *, ignore_term: bool) -> tuple[str, Path]:
    script = tmp_path / "task.py"
    script.write_text(TASK)
    marks = tmp_path / "marks.log"
    command = f"{sys.executable} {script} {marks} {int(ignore_term)}"
    (task_id,) = cluster.http.submit(
        [{"command": command, "max_retry_count": 1, "state": "available"}]
    )
    return task_id, marks


def starts(marks: Path) -> dict[int, list[str]]:
    return {int(m[0]): m for m in read_marks(marks) if m[1] == "start"}


def last_tick(marks: Path, attempt: int) -> float:
    return max(float(m[3]) for m in read_marks(marks) if m[0] == str(attempt) and m[1] == "tick")


def fence_lines(proc: Proc) -> list[tuple[float, float, str]]:
    text = proc.log.read_text(errors="replace")
    return [(float(a), float(b), kind) for a, b, kind in FENCE_LINE.findall(text)]


def run_the_fence(
    cluster: Cluster,
    w1: Proc,
    task_id: str,
    marks: Path,
    fault_on: Callable[[], None],
    fault_off: Callable[[], None],
) -> dict[str, float]:
    """Attempt 1 runs on w1; w2 waits, idle. ``fault_on()``; attempt 1's group
    must be gone before attempt 2 starts on w2; ``fault_off()``. Returns times."""
    cluster.http.wait_state(task_id, "running", timeout=20)
    first = wait_for(lambda: starts(marks).get(1), 20, "attempt 1 to start")
    assert first is not None
    pgid = int(first[2])
    cluster.start_worker("w2")
    cluster.wait_connected("w2")
    assert cluster.http.task(task_id)["execution"]["worker"] == "w1"

    fault_on()
    fault_at = time.monotonic()
    try:
        wait_for(lambda: not live_group_members(pgid), 3 * TIMEOUT_S + 10, "the fence", 0.005)
        gone_at = time.monotonic()
        second = wait_for(lambda: starts(marks).get(2), 30, "attempt 2 to start on w2")
    finally:
        fault_off()
    assert second is not None
    start2 = float(second[3])
    assert int(second[4]) == 0, f"attempt 1's group still had {second[4]} live processes"
    assert last_tick(marks, 1) < start2, "attempt 1 still ticked after attempt 2 started"
    assert gone_at - fault_at >= TIMEOUT_S / 2, "fenced long before the lease could lapse"
    fences = wait_for(lambda: fence_lines(w1), 10, "the fence in w1's log")
    lapsed_at = fences[0][0]
    assert lapsed_at < start2
    return {
        "fault_at": fault_at,
        "lapsed_at": lapsed_at,
        "gone_at": gone_at,
        "last_tick": last_tick(marks, 1),
        "start2": start2,
    }


def after_the_fault(cluster: Cluster, w1: Proc, task_id: str) -> None:
    """w1 reconnects, its stale report is refused, the rerun stands, and w1
    goes on claiming new work."""
    wait_for(
        lambda: any(task_id in line and "refused" in line for line in w1.log_text().splitlines()),
        30,
        "w1's stale report to be refused",
    )
    task = cluster.http.wait_state(task_id, "terminated", timeout=30)
    assert task["execution"]["exit_status"] == "success"
    assert task["execution"]["worker"] == "w2"
    history = cluster.http.history(task_id)
    assert [(h["attempt"], h["worker"], h["exit_status"]) for h in history] == [
        (1, "w1", ABANDONED),
        (2, "w2", "success"),
    ]
    wait_for(
        lambda: cluster.http.workers()["w1"]["state"] in ("idle", "busy"), 30, "w1 to reconnect"
    )
    w2 = cluster.workers["w2"]
    w2.popen.send_signal(signal.SIGTERM)
    assert w2.popen.wait(timeout=30) == 0
    (new_id,) = cluster.http.submit([{"command": "true", "state": "available"}])
    new = cluster.http.wait_state(new_id, "terminated", timeout=30)
    assert new["execution"]["exit_status"] == "success"
    assert new["execution"]["worker"] == "w1"
    assert w1.popen.poll() is None


def report(label: str, times: dict[str, float]) -> None:
    lapsed = times["lapsed_at"]
    print(
        f"{label}: lease lapsed {lapsed - times['fault_at']:.3f} s after the fault; "
        f"group gone {times['gone_at'] - lapsed:+.3f} s after the lapse "
        f"(last tick {times['last_tick'] - lapsed:+.3f} s); "
        f"rerun started {times['start2'] - lapsed:+.3f} s after the lapse"
    )


# --- 1. a frozen worker ------------------------------------------------------------------


def test_a_frozen_worker_is_fenced_by_its_sidecar(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server(worker_timeout_s=TIMEOUT_S, server_timeout_s=60)
    # The task ignores SIGTERM: only the sidecar's SIGKILL, within the margin, ends it.
    task_id, marks = submit_fenced_task(cluster, tmp_path, ignore_term=True)
    w1 = cluster.start_worker("w1")
    cluster.wait_connected("w1")

    times = run_the_fence(
        cluster,
        w1,
        task_id,
        marks,
        lambda: os.kill(w1.pid, signal.SIGSTOP),
        lambda: os.kill(w1.pid, signal.SIGCONT),
    )
    kinds = [kind for _, _, kind in fence_lines(w1)]
    assert kinds[:2] == ["SIGTERM", "SIGKILL"], kinds  # the frozen worker could do neither
    assert times["last_tick"] > times["lapsed_at"], "SIGTERM should not have stopped it"
    report("SIGSTOP", times)
    after_the_fault(cluster, w1, task_id)


# --- 2. a worker cut off from the server -------------------------------------------------


def test_a_partitioned_worker_is_fenced(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server(worker_timeout_s=TIMEOUT_S, server_timeout_s=60)
    task_id, marks = submit_fenced_task(cluster, tmp_path, ignore_term=False)
    proxy = ThreadedProxy(cluster.port)
    try:
        w1 = cluster.start_worker("w1", "--server", proxy.url, "--token", cluster.token)
        cluster.wait_connected("w1")
        times = run_the_fence(cluster, w1, task_id, marks, proxy.cut, proxy.heal)
        # Alive but cut off, the worker fences its tasks itself too.
        wait_for(lambda: "lease lapsed" in w1.log_text(), 10, "w1's own fence")
        report("network cut", times)
        after_the_fault(cluster, w1, task_id)
    finally:
        proxy.close()


# --- 3. a healthy, busy worker -----------------------------------------------------------

# Under load for this long: with worker_timeout_s=3 the lease is renewed some
# twenty times (every heartbeat) and would lapse within 3 s of one lost renewal.
HEALTHY_S = 10


def test_a_healthy_busy_worker_keeps_its_lease(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server(worker_timeout_s=3, server_timeout_s=60)
    w1 = cluster.start_worker("w1", cores=4)
    cluster.wait_connected("w1")
    (long_id,) = cluster.http.submit(
        [{"command": f"sleep {HEALTHY_S}", "state": "available", "max_retry_count": 0}]
    )
    cluster.http.wait_state(long_id, "running", timeout=20)
    ids: list[str] = []
    end = time.monotonic() + HEALTHY_S
    while time.monotonic() < end:  # a steady stream of short tasks, ~40 a second
        batch = [
            {
                "command": "echo out; echo err >&2; sleep 0.05",
                "state": "available",
                "max_retry_count": 0,
                "requested_resources": {"cores": 0.1},
            }
            for _ in range(10)
        ]
        ids += cluster.http.submit(batch)
        time.sleep(0.25)
    task = cluster.http.wait_state(long_id, "terminated", timeout=30)
    assert task["execution"]["exit_status"] == "success", task
    wait_for(
        lambda: cluster.http.count({"state": "terminated"}) == len(ids) + 1,
        60,
        "every short task to end",
        interval=0.25,
    )
    assert cluster.http.count({"execution.exit_status": "success"}) == len(ids) + 1
    assert cluster.http.count({"retry_count": {"$gt": 0}}) == 0
    log = w1.log_text()
    assert "lease lapsed" not in w1.log.read_text(errors="replace"), log
    assert "lease: " in log  # it did run under a lease
    assert cluster.http.workers()["w1"]["state"] in ("idle", "busy")
    print(f"healthy: {len(ids)} short tasks and one of {HEALTHY_S} s, no fence")


# --- 4. the gateway's side, and older workers --------------------------------------------


def test_the_gateway_acks_numbered_heartbeats_only(cluster: Cluster) -> None:
    cluster.start_server()
    url = cluster.url.replace("http", "ws", 1) + "/workers/connect"
    headers = {"Authorization": basic_auth_header(cluster.token)}

    async def next_frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, object]:
        msg = await ws.receive(timeout=30)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        frame: dict[str, object] = msg.json()
        return frame

    async def join(ws: aiohttp.ClientWebSocketResponse, name: str) -> None:
        await ws.send_json({"type": "hello", "name": name, "capacity": {"cores": 1}})
        assert (await next_frame(ws))["type"] == "welcome"

    async def main() -> None:
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.ws_connect(url, protocols=(p.LEASE_PROTOCOL,)) as ws:
                assert ws.protocol == p.LEASE_PROTOCOL  # the server takes part in the lease
                await join(ws, "new")
                await ws.send_json({"type": "heartbeat", "seq": 7})
                assert await next_frame(ws) == {"type": "heartbeat_ack", "seq": 7}
                await ws.send_json({"type": "heartbeat"})  # unnumbered: no answer
                await ws.send_json({"type": "heartbeat", "seq": 8, "draining": False})
                assert await next_frame(ws) == {"type": "heartbeat_ack", "seq": 8}
                await ws.send_json({"type": "heartbeat", "seq": -1})
                msg = await ws.receive(timeout=30)
                assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == p.CLOSE_BAD_FRAME
            # A worker of protocol version 1 without the subprotocol: served as before.
            async with http.ws_connect(url) as ws:
                assert ws.protocol is None
                await join(ws, "old")
                await ws.send_json({"type": "heartbeat", "draining": False})
                await ws.send_json({"type": "claim", "free": {"cores": 1}, "limit": 1})
                assert await next_frame(ws) == {"type": "assigned", "attempts": []}

    asyncio.run(main())


def test_a_frozen_worker_is_lost_before_its_socket_closes(cluster: Cluster) -> None:
    """A worker frozen past ``worker_timeout_s`` cannot answer the close
    handshake. The loss must be on record before the server sends its close,
    so that the worker's reconnect, right after it thaws, has its attempts
    dropped: they were abandoned (and may run elsewhere), and resuming them
    would let it start them again beside their new owner."""
    cluster.start_server(worker_timeout_s=1.0, heartbeat_interval_s=0.25)
    [task_id] = cluster.http.submit([{"command": "sleep 60", "state": "available"}])
    url = cluster.url.replace("http", "ws", 1) + "/workers/connect"
    headers = {"Authorization": basic_auth_header(cluster.token)}
    room = {"cores": 1, "memory": 2**30}
    hello = {"type": "hello", "name": "frozen", "capacity": room}

    async def main() -> None:
        async with aiohttp.ClientSession(headers=headers) as http:
            # autoclose=False: like a frozen process, it does not answer the close.
            old = await http.ws_connect(url, protocols=(p.LEASE_PROTOCOL,), autoclose=False)
            await old.send_json(hello)
            first = await old.receive_json(timeout=30)
            assert first["type"] == "welcome"
            await old.send_json({"type": "claim", "free": room, "limit": 1})
            assigned = await old.receive_json(timeout=30)
            [attempt] = assigned["attempts"]
            assert attempt["task"] == task_id
            # Silent from here on; the server's close frame marks the loss.
            closing = await old.receive(timeout=30)
            assert closing.type == aiohttp.WSMsgType.CLOSE, closing
            assert closing.data == p.CLOSE_LOST
            # The loss was on record before the close was sent.
            history = await asyncio.to_thread(cluster.http.history, task_id)
            assert history[0]["exit_status"] == ABANDONED, history
            # Thawed: it reconnects at once, before answering the old close.
            async with http.ws_connect(url, protocols=(p.LEASE_PROTOCOL,)) as new:
                running = [{"task": task_id, "execution_key": attempt["execution_key"]}]
                await new.send_json({**hello, "running": running, "secret": first["secret"]})
                welcome = await new.receive_json(timeout=30)
                assert welcome["type"] == "welcome", welcome
                assert welcome["resumed"] == [] and welcome["dropped"] == [task_id], welcome
                await new.send_json({"type": "heartbeat", "seq": 1})
                assert await new.receive_json(timeout=30) == {"type": "heartbeat_ack", "seq": 1}
            await old.close()

    asyncio.run(main())
