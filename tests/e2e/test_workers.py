"""End to end with real processes: a ``banyan-server`` and ``banyan-worker``s
running real commands. Ordering of continuations, resource limits, retries,
cancellation, workers that die, stop, get SIGTERM, a server that is
``kill -9``ed mid-run, racing workers, logs and progress (SPEC §3, §4, §7).

Commands record what happened by appending lines (``date +%s.%N`` stamps,
``$BANYAN_TASK_ID``) to files in ``tmp_path``; every wait is a bounded poll.
"""

from __future__ import annotations

import itertools
import os
import shlex
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from banyan.ids import new_id
from testbed import BIN, Cluster, wait_for
from tests.e2e.helpers import processes_with, read_marks, until_file

pytestmark = pytest.mark.slow

ABANDONED = "abandoned (worker unreachable)"
STOPPED = "abandoned (worker stopped)"
RETURNED = "returned (not started)"  # a prefetched attempt handed back (issue 12)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path)
    yield the_cluster
    the_cluster.close()
    # Shown by pytest only when the test failed.
    procs = ([the_cluster.server] if the_cluster.server else []) + list(
        the_cluster.workers.values()
    )
    for proc in procs:
        print(f"----- {proc.name} (exit {proc.popen.returncode}) -----\n{proc.log_text()}")


def marker() -> str:
    """A unique sleep duration: finds the task's process by its command line."""
    return f"{1000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"


def stamped(log: Path, label: str, body: str) -> str:
    """A command that appends ``label start T`` and ``label end T`` around ``body``."""
    q = shlex.quote(str(log))
    return (
        f'echo "{label} start $(date +%s.%N)" >> {q}; {body}; '
        f'echo "{label} end $(date +%s.%N)" >> {q}'
    )


def intervals(log: Path) -> dict[str, tuple[float, float]]:
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    for label, what, stamp in read_marks(log):
        (starts if what == "start" else ends)[label] = float(stamp)
    assert starts.keys() == ends.keys(), (starts, ends)
    return {label: (starts[label], ends[label]) for label in starts}


# --- 1. continuations ------------------------------------------------------------


@pytest.mark.parametrize("mode", [(), ("--burst",)], ids=["serving", "burst"])
def test_diamond_of_continuations_runs_in_order(
    cluster: Cluster, tmp_path: Path, mode: tuple[str, ...]
) -> None:
    """Also with --burst: the worker must not leave while the join task's parents'
    reports are still being applied (it once said bye and abandoned D)."""
    cluster.start_server()
    log = tmp_path / "order.log"
    a, b, c, d = (new_id() for _ in range(4))
    body = "sleep 0.3"
    ids = cluster.http.submit(
        [
            {"_id": d, "name": "D", "command": stamped(log, "D", body)},
            {"_id": b, "name": "B", "command": stamped(log, "B", body), "continuations": [d]},
            {"_id": c, "name": "C", "command": stamped(log, "C", body), "continuations": [d]},
            {
                "_id": a,
                "name": "A",
                "command": stamped(log, "A", body),
                "continuations": [b, c],
                "state": "available",
            },
        ]
    )
    assert ids == [d, b, c, a]
    before = {t: cluster.http.task(t) for t in ids}
    assert before[a]["state"] == "available"
    assert {before[t]["state"] for t in (b, c, d)} == {"inactive"}
    assert before[d]["pending_dependency_count"] == 2
    assert before[b]["pending_dependency_count"] == 1

    cluster.start_worker("w1", *mode, cores=2)
    done = cluster.http.wait_state(d, "terminated", timeout=20)
    assert done["execution"]["exit_status"] == "success", done
    assert len(cluster.http.history(d)) == 1
    for t in (a, b, c):
        task = cluster.http.task(t)
        assert task["state"] == "terminated", task
        assert task["execution"]["exit_status"] == "success", task
    assert done["pending_dependency_count"] == 0

    spans = intervals(log)
    assert sorted(spans) == ["A", "B", "C", "D"]
    assert spans["A"][1] <= spans["B"][0]
    assert spans["A"][1] <= spans["C"][0]
    assert max(spans["B"][1], spans["C"][1]) <= spans["D"][0], spans


# --- 2. resources ------------------------------------------------------------------


def test_worker_never_runs_more_than_its_cores(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    log = tmp_path / "cores.log"
    cores = {f"big{i}": 2 for i in range(3)} | {f"small{i}": 1 for i in range(3)}
    cluster.http.submit(
        [
            {
                "name": label,
                "command": stamped(log, label, "sleep 0.3"),
                "requested_resources": {"cores": n},
                "state": "available",
            }
            for label, n in cores.items()
        ]
    )
    cluster.start_worker("w1", cores=2)
    wait_for(lambda: cluster.http.count({"state": "terminated"}) == len(cores), 30, "all done")
    assert cluster.http.count({"execution.exit_status": "success"}) == len(cores)

    spans = intervals(log)
    assert spans.keys() == cores.keys()
    # At every start, the cores of what runs at that moment stay within 2.
    for label, (start, _) in spans.items():
        running = [other for other, (s, e) in spans.items() if s <= start < e]
        assert label in running
        assert sum(cores[o] for o in running) <= 2, (label, running, spans)
    bigs = sorted(spans[f"big{i}"] for i in range(3))
    for (_, end), (start, _) in itertools.pairwise(bigs):
        assert end <= start, bigs


# --- 3. retries ---------------------------------------------------------------------


def test_failing_task_is_retried_until_it_succeeds(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    counter = shlex.quote(str(tmp_path / "counter"))
    command = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {counter}; "
        '[ "$n" -ge 3 ]'
    )
    (task_id,) = cluster.http.submit(
        [{"command": command, "max_retry_count": 2, "state": "available"}]
    )
    cluster.start_worker("w1")
    task = cluster.http.wait_state(task_id, "terminated", timeout=20)
    assert task["execution"]["exit_status"] == "success"
    assert task["retry_count"] == 2
    assert task["execution"]["attempt"] == 3
    history = cluster.http.history(task_id)
    assert [h["attempt"] for h in history] == [1, 2, 3]
    assert [h["exit_status"] for h in history] == ["failure", "failure", "success"]
    assert [h["exit_code"] for h in history] == [1, 1, 0]
    assert (tmp_path / "counter").read_text().strip() == "3"


# --- 4. cancellation -----------------------------------------------------------------


def test_cancel_a_running_task_kills_it_within_the_grace(cluster: Cluster) -> None:
    cluster.start_server()
    mark = marker()
    grace = 1.0
    # The task ignores SIGTERM (an ignored signal stays ignored across exec), so
    # the worker must escalate to SIGKILL after max_termination_time.
    (task_id,) = cluster.http.submit(
        [
            {
                "command": f"trap '' TERM; sleep {mark}",
                "max_termination_time": grace,
                "state": "available",
            }
        ]
    )
    cluster.start_worker("w1")
    cluster.http.wait_state(task_id, "running", timeout=15)
    wait_for(lambda: processes_with(mark), 10, "the task's sleep to start")

    asked = time.monotonic()
    resp = cluster.http.patch(task_id, {"state": "pending_cancellation"})
    assert resp.status == 200, resp
    task = cluster.http.wait_state(task_id, "cancelled", timeout=grace + 10)
    gone = wait_for(lambda: not processes_with(mark), 10, "the task's sleep to be killed")
    elapsed = time.monotonic() - asked
    assert gone
    assert elapsed <= grace + 1.0, f"cancelled after {elapsed:.2f} s (grace {grace} s)"
    assert elapsed >= grace * 0.9, f"SIGKILL came before the grace: {elapsed:.2f} s"
    assert task["execution"]["exit_status"] == "cancelled"
    (attempt,) = cluster.http.history(task_id)
    assert attempt["exit_status"] == "cancelled"


# --- 5. a worker killed mid-task ---------------------------------------------------------


def test_killed_worker_task_is_abandoned_and_rerun(cluster: Cluster, tmp_path: Path) -> None:
    timeout = 3.0
    cluster.start_server(worker_timeout_s=timeout)
    mark = marker()
    second = shlex.quote(str(tmp_path / "second"))
    command = f"test -f {second} && true || (touch {second}; sleep {mark})"
    (task_id,) = cluster.http.submit(
        [{"command": command, "max_retry_count": 1, "state": "available"}]
    )
    w1 = cluster.start_worker("w1")
    cluster.http.wait_state(task_id, "running", timeout=15)
    pids = wait_for(lambda: processes_with(mark), 10, "the task's sleep to start")
    w1.remember_descendants()

    os.kill(w1.pid, signal.SIGKILL)
    killed = time.monotonic()
    killed_at = time.time()
    w1.popen.wait(timeout=10)
    # The reaper sidecar kills the task groups of a worker that dies.
    wait_for(lambda: not processes_with(mark), 5, f"the orphaned task processes {pids} to die")

    cluster.start_worker("w2")
    abandoned_at = wait_for(
        lambda: cluster.http.history(task_id)[0]["exit_status"] == ABANDONED and time.monotonic(),
        timeout + 10,
        "attempt 1 to be abandoned",
    )
    # Lost after worker_timeout_s of silence (minus one heartbeat interval), not before.
    assert abandoned_at - killed >= timeout - 1.0, "abandoned before worker_timeout_s"
    task = cluster.http.wait_state(task_id, "terminated", timeout=20)
    assert task["execution"]["exit_status"] == "success"
    assert task["execution"]["worker"] == "w2"
    assert task["retry_count"] == 0 and task["abandon_count"] == 1
    history = cluster.http.history(task_id)
    assert [(h["worker"], h["exit_status"]) for h in history] == [
        ("w1", ABANDONED),
        ("w2", "success"),
    ]
    wait_for(lambda: cluster.http.workers()["w1"]["state"] == "lost", 5, "w1 to be lost")
    # Its heartbeat is the last time it was heard from (its connection dropped
    # at the kill), not the time it was declared lost; that is "left".
    asked_at = time.time()
    lost = cluster.http.workers()["w1"]
    slack = 0.5  # the server notices the dropped connection a moment after the kill
    assert lost["last_heartbeat_age_s"] >= asked_at - killed_at - slack, lost
    assert lost["left_age_s"] is not None
    assert lost["last_heartbeat_age_s"] - lost["left_age_s"] >= timeout - 1.0, lost


# --- 6. a worker stopped past the timeout ----------------------------------------------------


def test_stopped_worker_is_lost_and_its_stale_report_refused(
    cluster: Cluster, tmp_path: Path
) -> None:
    timeout = 3.0
    cluster.start_server(worker_timeout_s=timeout, server_timeout_s=30)
    mark = marker()
    log = tmp_path / "runs.log"
    body = f'if [ "$BANYAN_ATTEMPT" = 1 ]; then sleep {mark}; else sleep 1; fi'
    (task_id,) = cluster.http.submit(
        [
            {
                "command": stamped(log, "$BANYAN_ATTEMPT", body),
                "max_retry_count": 1,
                "state": "available",
            }
        ]
    )
    w1 = cluster.start_worker("w1")
    cluster.http.wait_state(task_id, "running", timeout=15)
    wait_for(lambda: processes_with(mark), 10, "attempt 1 to start")
    w1.remember_descendants()

    os.kill(w1.pid, signal.SIGSTOP)
    stopped_at = time.time()
    try:
        lost = wait_for(
            lambda: cluster.http.workers()["w1"]["state"] == "lost",
            timeout + 10,
            "the stopped worker to be lost",
        )
        assert lost
        # Its connection stayed open, silent: its heartbeat is still the last
        # frame it sent before it stopped (a frame in flight may land just after).
        asked_at = time.time()
        silent = cluster.http.workers()["w1"]
        assert silent["last_heartbeat_age_s"] >= asked_at - stopped_at - 0.2, silent
        assert cluster.http.history(task_id)[0]["exit_status"] == ABANDONED
        cluster.start_worker("w2")
        wait_for(
            lambda: cluster.http.task(task_id)["execution"]["attempt"] == 2,
            15,
            "attempt 2 to start on w2",
        )
        assert cluster.http.workers()["w1"]["state"] == "lost"
    finally:
        os.kill(w1.pid, signal.SIGCONT)

    # Resumed, w1 learns its attempt was superseded: it stops it and its report
    # ("abandoned (worker stopped)", with the old key) is refused.
    wait_for(lambda: not processes_with(mark), 15, "w1 to stop its stale attempt")
    wait_for(
        lambda: any(task_id in line and "refused" in line for line in w1.log_text().splitlines()),
        10,
        "w1's stale report to be refused (its log says so)",
    )
    task = cluster.http.wait_state(task_id, "terminated", timeout=15)
    assert task["execution"]["exit_status"] == "success"
    assert task["execution"]["worker"] == "w2"
    history = cluster.http.history(task_id)
    assert [(h["attempt"], h["worker"], h["exit_status"]) for h in history] == [
        (1, "w1", ABANDONED),
        (2, "w2", "success"),
    ]
    # Attempt 1 was stopped, never ran to its end; attempt 2 ran once, to its end.
    assert [m[:2] for m in read_marks(log)] == [["1", "start"], ["2", "start"], ["2", "end"]]
    wait_for(
        lambda: cluster.http.workers()["w1"]["state"] in ("idle", "busy"),
        10,
        "w1 to reconnect",
    )
    assert w1.popen.poll() is None


# --- 7. the server killed and restarted mid-run ------------------------------------------------


def test_server_kill_9_mid_run_every_task_runs_exactly_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    # worker_timeout_s is long enough for the workers to re-attach: nothing is abandoned.
    cluster.start_server(worker_timeout_s=10, server_timeout_s=30)
    runs = shlex.quote(str(tmp_path / "runs.log"))
    n = 50
    ids = cluster.http.submit(
        [
            {"command": f'echo "$BANYAN_TASK_ID" >> {runs}; sleep 0.2', "state": "available"}
            for _ in range(n)
        ]
    )
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    wait_for(lambda: cluster.http.count({"state": "terminated"}) >= 8, 30, "some tasks to end")
    cluster.kill_server()
    killed_at = len(read_marks(tmp_path / "runs.log"))
    cluster.restart_server()

    wait_for(lambda: cluster.http.count({"state": "terminated"}) == n, 60, "every task to end")
    assert killed_at < n, "the kill came after the run"
    not_success = cluster.http.find_all(
        {"execution.exit_status": {"$ne": "success"}}, {"execution": 1}
    )
    assert [
        (t["_id"], t["execution"]["exit_status"], cluster.http.history(t["_id"]))
        for t in not_success
    ] == []
    assert cluster.http.count({"retry_count": {"$gt": 0}}) == 0
    counts = Counter(line[0] for line in read_marks(tmp_path / "runs.log"))
    assert set(counts) == set(ids)
    assert {k: v for k, v in counts.items() if v != 1} == {}
    # One attempt started per task, with its real start time (a ``started``
    # frame lost in the crash is sent again on the reconnect). A prefetched
    # attempt may have been handed back unstarted (to an idle worker, after
    # the restart): that is no run.
    for task_id in ids:
        history = cluster.http.history(task_id)
        ran = [a for a in history if a["exit_status"] != RETURNED]
        assert len(ran) == 1 and ran[0]["time_started"] is not None, history
    for w in ("w1", "w2"):
        assert cluster.workers[w].popen.poll() is None, f"{w} exited"


# --- 8. racing workers ------------------------------------------------------------------------


def test_four_workers_racing_for_2000_tasks_never_double_claim(cluster: Cluster) -> None:
    cluster.start_server()
    n = 2000
    names = [f"w{i}" for i in range(4)]
    for name in names:
        cluster.start_worker(name, cores=8)
    cluster.wait_connected(*names)
    ids = cluster.http.submit([{"command": "true", "state": "available"} for _ in range(n)])
    assert len(set(ids)) == n

    wait_for(
        lambda: cluster.http.count({"state": "terminated"}) == n,
        60,
        "every task to end",
        interval=0.25,
    )
    assert cluster.http.count({"execution.exit_status": "success"}) == n
    assert cluster.http.count({"retry_count": {"$gt": 0}}) == 0
    tasks = cluster.http.find_all({}, {"execution": 1, "retry_count": 1})
    assert len(tasks) == n
    assert {t["_id"] for t in tasks} == set(ids)
    # Each ran once: an attempt before the last one can only be a prefetched
    # attempt handed back unstarted (to an idle worker), which runs nothing.
    for task in tasks:
        if task["execution"]["attempt"] > 1:
            *earlier, last = cluster.http.history(task["_id"])
            assert {a["exit_status"] for a in earlier} == {RETURNED}, earlier
            assert last["exit_status"] == "success"
    assert Counter(t["retry_count"] for t in tasks) == {0: n}
    by_worker = Counter(t["execution"]["worker"] for t in tasks)
    assert set(by_worker) <= set(names)
    assert len(by_worker) >= 2, by_worker  # they did race


# --- 9. SIGTERM on the worker --------------------------------------------------------------------


def test_sigterm_without_drain_stops_the_task_and_requeues_it(cluster: Cluster) -> None:
    cluster.start_server()
    mark = marker()
    (task_id,) = cluster.http.submit(
        [
            {
                "command": f"sleep {mark}",
                "max_retry_count": 1,
                "max_termination_time": 2,
                "state": "available",
            }
        ]
    )
    w1 = cluster.start_worker("w1")
    cluster.http.wait_state(task_id, "running", timeout=15)
    wait_for(lambda: processes_with(mark), 10, "the task to start")

    w1.popen.send_signal(signal.SIGTERM)
    assert w1.popen.wait(timeout=15) == 0
    assert not processes_with(mark)
    task = cluster.http.task(task_id)
    # Back in the queue: the crash budget, not the retry budget.
    assert task["state"] == "available", task
    assert task["retry_count"] == 0 and task["abandon_count"] == 1
    (attempt,) = cluster.http.history(task_id)
    assert attempt["exit_status"] == STOPPED
    assert attempt["worker"] == "w1"
    wait_for(lambda: cluster.http.workers()["w1"]["state"] == "left", 5, "w1 to be left")


def test_sigterm_with_drain_finishes_the_task(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    log = tmp_path / "drain.log"
    release = tmp_path / "release"
    (task_id,) = cluster.http.submit(
        [{"command": stamped(log, "t", until_file(release)), "state": "available"}]
    )
    w1 = cluster.start_worker("w1", "--drain")
    cluster.http.wait_state(task_id, "running", timeout=15)
    wait_for(lambda: read_marks(log), 10, "the task to start")

    w1.popen.send_signal(signal.SIGTERM)
    wait_for(lambda: cluster.http.workers()["w1"]["state"] == "draining", 10, "w1 to drain")
    # A draining worker claims nothing more.
    (later,) = cluster.http.submit([{"command": "true", "state": "available"}])
    release.touch()  # the running task ends by itself
    assert w1.popen.wait(timeout=15) == 0
    task = cluster.http.task(task_id)
    assert task["state"] == "terminated", task
    assert task["execution"]["exit_status"] == "success"
    (attempt,) = cluster.http.history(task_id)
    assert attempt["exit_status"] == "success"
    assert [m[1] for m in read_marks(log)] == ["start", "end"]
    assert cluster.http.task(later)["state"] == "available"
    wait_for(lambda: cluster.http.workers()["w1"]["state"] == "left", 5, "w1 to be left")


# --- 10. logs ----------------------------------------------------------------------------------


def test_logs_capture_both_streams_and_are_readable_while_running(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_server()
    tag = uuid.uuid4().hex[:8]
    release = tmp_path / "release"
    both, live = cluster.http.submit(
        [
            {"command": f"echo out-{tag}; echo err-{tag} >&2", "state": "available"},
            {
                "command": f"echo start-{tag}; {until_file(release)}; echo end-{tag}",
                "state": "available",
            },
        ]
    )
    cluster.start_worker("w1")

    def started() -> dict[str, Any] | None:
        logs = cluster.http.logs(live)
        return logs if f"start-{tag}" in logs.get("stdout", "") else None

    logs = wait_for(started, 10, "the first line of the running task")
    assert logs is not None
    assert cluster.http.task(live)["state"] == "running", "read only after the end"
    assert f"end-{tag}" not in logs["stdout"]

    cluster.http.wait_state(both, "terminated", timeout=10)
    out = cluster.http.logs(both)
    assert out["stdout"] == f"out-{tag}\n"
    assert out["stderr"] == f"err-{tag}\n"
    assert cluster.http.ok("GET", f"/tasks/{both}/logs", stream="stderr")["stderr"] == (
        f"err-{tag}\n"
    )

    release.touch()
    cluster.http.wait_state(live, "terminated", timeout=10)
    final = cluster.http.logs(live)
    assert final["stdout"] == f"start-{tag}\nend-{tag}\n"
    assert final["stderr"] == ""


# --- 11. progress --------------------------------------------------------------------------------


def _has_progress_command() -> bool:
    try:
        result = subprocess.run(
            [str(BIN / "banyan"), "--help"], capture_output=True, text=True, timeout=30
        )
    except OSError:
        return False
    return "progress" in result.stdout


def test_task_reports_progress(cluster: Cluster, tmp_path: Path) -> None:
    if not _has_progress_command():
        pytest.skip("`banyan progress` does not exist yet (not in `banyan --help`)")
    cluster.start_server()
    banyan = shlex.quote(str(BIN / "banyan"))
    release = tmp_path / "release"  # the task runs on until the test has seen its progress
    (task_id,) = cluster.http.submit(
        [
            {
                "command": f'{banyan} progress 40 "loading"; {until_file(release)}',
                "state": "available",
            }
        ]
    )
    cluster.start_worker("w1")

    def reported() -> dict[str, Any] | None:
        task = cluster.http.task(task_id)
        execution = task.get("execution") or {}
        return task if execution.get("progress") else None

    task = wait_for(reported, 10, "the progress report")
    assert task is not None
    assert task["state"] == "running"
    assert task["execution"]["progress"]["percent"] == 40
    assert task["execution"]["progress"]["message"] == "loading"
    release.touch()
    done = cluster.http.wait_state(task_id, "terminated", timeout=30)
    assert done["execution"]["exit_status"] == "success"
