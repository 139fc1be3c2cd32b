"""The ground truth the scorecard rests on: the task command's marks and its
lock really show an execution that overlaps another of the same task (also
one that was killed and never wrote its end), and leftover processes are
found by the marker they inherit."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.faults.harness import MARKER_ENV, Scene, leftover


def spawn(scene: Scene, task: str, attempt: int, body: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BANYAN_TASK_ID": task,
        "BANYAN_ATTEMPT": str(attempt),
        MARKER_ENV: scene.marker,
    }
    return subprocess.Popen(["/bin/sh", "-c", scene.command(body)], env=env, start_new_session=True)


def wait_marks(scene: Scene, n: int) -> None:
    deadline = time.monotonic() + 20
    while len(scene.executions()) < n:
        assert time.monotonic() < deadline, scene.marks.read_text()
        time.sleep(0.02)


def test_marks_and_lock_show_overlapping_and_killed_executions(tmp_path: Path) -> None:
    scene = Scene(tmp_path, "harness")
    task = "f" * 24
    first = spawn(scene, task, 1, "sleep 30")
    wait_marks(scene, 1)
    second = spawn(scene, task, 2, "true")  # while the first one runs
    assert second.wait(timeout=20) == 0
    os.killpg(first.pid, signal.SIGKILL)  # killed: it never writes its end
    first.wait(timeout=20)
    third = spawn(scene, task, 3, "true")  # after the first one died
    assert third.wait(timeout=20) == 0

    one, two, three = scene.executions()
    assert (one.attempt, one.end, one.overlapped) == (1, None, False)
    assert (two.attempt, two.overlapped) == (2, True)
    assert two.end is not None
    assert (three.attempt, three.overlapped) == (3, False)
    assert three.end is not None


def test_leftover_finds_processes_by_the_inherited_marker(tmp_path: Path) -> None:
    scene = Scene(tmp_path, "harness")
    proc = spawn(scene, "e" * 24, 1, "sleep 30")
    try:
        wait_marks(scene, 1)
        found = asyncio.run(leftover(scene.marker, grace_s=0))
        assert proc.pid in found
        assert len(found) >= 2  # the shell and its sleep
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)
    assert asyncio.run(leftover(scene.marker, grace_s=10)) == []
