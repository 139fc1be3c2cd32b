"""Containment of a task's escaped processes (``setsid``, double forks,
daemons), with real processes: each kind this machine offers (cgroup v2, and
the worker as child subreaper) kills them on cancel, when the task's shell
ends on its own (as Slurm does at the end of a job), and after a ``kill -9``
of the worker (by the reaper sidecar)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from worker import cgroups, containment
from worker.containment import CgroupContainment, Containment, SubreaperContainment
from worker.runner import RunningTask, TaskSpec, start

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 10.0
KINDS = ["cgroup", "subreaper"]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def wait_until(condition: object, *, timeout_s: float, what: str) -> float:
    """Poll ``condition()`` until true; how long it took."""
    assert callable(condition)
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout_s:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - began


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def make(kind: str) -> Containment:
    if kind == "cgroup":
        found = containment.try_cgroup(enforce_memory=False)
        if not isinstance(found, CgroupContainment):
            pytest.skip(f"no writable cgroup v2 here: {found}")
        return found
    if not containment.set_child_subreaper():
        pytest.skip("PR_SET_CHILD_SUBREAPER is not available")
    return SubreaperContainment("chosen by the test")


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> Iterator[Containment]:
    chosen = make(request.param)
    yield chosen
    chosen.close()


@pytest.fixture
def strays() -> Iterator[list[int]]:
    """Pids a failing test may leave behind; killed by pid at teardown."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def spec(command: str, grace_s: float = 1.0) -> TaskSpec:
    return TaskSpec(
        task_id="c-1",
        attempt=1,
        command=command,
        env=None,
        cwd=None,
        max_termination_time_s=grace_s,
    )


SETSID = "setsid sleep 300 & echo $! > {pid}; sleep 300"
DAEMON = (
    f'{sys.executable} -c "import os, sys\n'
    "if os.fork(): os._exit(0)\n"
    "os.setsid()\n"
    "if os.fork(): os._exit(0)\n"
    "open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid()))\n"
    "os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "os.execvp('sleep', ['sleep', '300'])\" {pid}; sleep 300"
)


async def started(task: RunningTask, pid_file: Path, strays: list[int]) -> int:
    await wait_until(lambda: read_pid(pid_file), timeout_s=WAIT_S, what="the escapee's pid")
    pid = read_pid(pid_file)
    assert pid is not None and alive(pid)
    strays.append(pid)
    # $! is known before the child has run setsid: wait until it has left.
    await wait_until(lambda: os.getsid(pid) != task.pgid, timeout_s=WAIT_S, what="setsid")
    return pid


@pytest.mark.parametrize("command", [SETSID, DAEMON], ids=["setsid", "double-fork"])
async def test_cancel_kills_escaped_processes_within_the_grace(
    kind: Containment, command: str, tmp_path: Path, strays: list[int]
) -> None:
    pid_file = tmp_path / "escaped.pid"
    task = await start(spec(command.format(pid=pid_file)), containment=kind)
    escaped = await started(task, pid_file, strays)
    if kind.kind == "subreaper":
        task.sample()  # as the agent does every --usage-interval; not needed, but usual
    began = time.monotonic()
    await asyncio.wait_for(task.terminate(1.0), WAIT_S)
    await wait_until(lambda: not alive(escaped), timeout_s=WAIT_S, what="escapee gone")
    assert time.monotonic() - began <= 1.0 + 1.0
    assert (await asyncio.wait_for(task.wait(), WAIT_S)).exit_status == "cancelled"


LEFT_SETSID = "setsid sleep 300 & echo $! > {pid}; echo done"
# A daemon with an empty environment: in subreaper mode nothing ties it to
# its attempt but being adopted while no running attempt claims it.
LEFT_BARE_DAEMON = "env -i " + DAEMON.replace("; sleep 300", "; echo done").replace(
    "{pid}; echo done", "{pid}; while [ ! -s {pid} ]; do sleep 0.01; done; echo done"
)


@pytest.mark.parametrize("command", [LEFT_SETSID, LEFT_BARE_DAEMON], ids=["setsid", "env-i"])
async def test_leftovers_of_a_task_that_ended_are_killed(
    kind: Containment, command: str, tmp_path: Path, strays: list[int]
) -> None:
    pid_file = tmp_path / "left.pid"
    task = await start(spec(command.format(pid=pid_file)), containment=kind)
    result = await asyncio.wait_for(task.wait(), WAIT_S)
    assert result.exit_status == "success"
    escaped = read_pid(pid_file)
    assert escaped is not None
    strays.append(escaped)
    await wait_until(lambda: not alive(escaped), timeout_s=WAIT_S, what="leftover gone")


async def test_the_cgroup_of_an_attempt_is_emptied_then_reused_or_removed(
    tmp_path: Path,
) -> None:
    chosen = make("cgroup")
    assert isinstance(chosen, CgroupContainment)
    try:
        task = await start(spec("sleep 300 & setsid sleep 300 & wait"), containment=chosen)
        box_path = task.box.path  # type: ignore[attr-defined]
        await wait_until(  # sh and both sleeps
            lambda: len(containment.cgroup_procs(box_path)) >= 3, timeout_s=WAIT_S, what="3"
        )
        assert os.getpid() not in containment.cgroup_procs(box_path)  # the worker moved back
        await asyncio.wait_for(task.terminate(1.0), WAIT_S)
        await asyncio.wait_for(task.wait(), WAIT_S)
        assert containment.cgroup_procs(box_path) == []
        # The next attempt gets the emptied cgroup (none of the old processes
        # in it), or a new one while the old one is removed.
        second = await start(spec("sleep 300"), containment=chosen)
        second_path = second.box.path  # type: ignore[attr-defined]
        members = containment.cgroup_procs(second_path)
        assert second.pid in members
        assert {os.getpgid(pid) for pid in members} == {second.pid}  # only the new attempt
        if second_path != box_path:
            await wait_until(lambda: not box_path.exists(), timeout_s=WAIT_S, what="removed")
        else:
            assert chosen.pooled
        await asyncio.wait_for(second.terminate(1.0), WAIT_S)
        await asyncio.wait_for(second.wait(), WAIT_S)
    finally:
        chosen.close()
    assert not chosen.scope.exists()


async def test_attempts_one_after_another_reuse_one_cgroup_without_memory_accounting(
    tmp_path: Path,
) -> None:
    chosen = make("cgroup")
    assert isinstance(chosen, CgroupContainment)
    if not chosen.pooled:
        pytest.skip("memory accounting here: each attempt gets a new cgroup")
    try:
        paths = set()
        for _ in range(3):
            task = await start(spec("true"), containment=chosen)
            assert (await asyncio.wait_for(task.wait(), WAIT_S)).exit_status == "success"
            paths.add(task.box.path)  # type: ignore[attr-defined]
        assert len(paths) == 1
        assert [p for p in chosen.scope.iterdir() if p.is_dir()] == list(paths)
    finally:
        chosen.close()
    assert not chosen.scope.exists()


WORKER_LIKE = textwrap.dedent(
    """
    import asyncio, sys
    from worker import containment
    from worker.reaper import Reaper
    from worker.runner import TaskSpec, start

    async def main():
        kind, pid_file = sys.argv[1], sys.argv[2]
        if kind == "cgroup":
            chosen = containment.try_cgroup(enforce_memory=False)
        else:
            assert containment.set_child_subreaper()
            chosen = containment.SubreaperContainment("test")
        reaper = Reaper.start()
        containment.MANAGED_PIDS.add(reaper.pid)
        command = f"setsid sleep 300 & echo $! > {pid_file}; sleep 300"
        spec = TaskSpec(task_id="k-1", attempt=3, command=command,
                        env=None, cwd=None, max_termination_time_s=1.0)
        task = await start(spec, reaper=reaper, containment=chosen)
        print(task.pgid, reaper.pid, flush=True)
        await asyncio.sleep(1000)

    asyncio.run(main())
    """
)


def test_escaped_processes_die_with_a_killed_worker(
    kind: Containment, tmp_path: Path, strays: list[int]
) -> None:
    pid_file = tmp_path / "escaped.pid"
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER_LIKE, kind.kind, str(pid_file)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        pgid, reaper_pid = (int(n) for n in worker.stdout.readline().split())
        strays += [pgid, reaper_pid]
        asyncio.run(wait_until(lambda: read_pid(pid_file), timeout_s=WAIT_S, what="pid file"))
        escaped = read_pid(pid_file)
        assert escaped is not None
        strays.append(escaped)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=WAIT_S)
        asyncio.run(
            wait_until(lambda: not alive(escaped) and not alive(pgid), timeout_s=5, what="all gone")
        )
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        if worker.stdout is not None:
            worker.stdout.close()


async def test_samples_count_a_daemon_that_left_the_tree(
    kind: Containment, tmp_path: Path, strays: list[int]
) -> None:
    pid_file = tmp_path / "daemon.pid"
    task = await start(spec(DAEMON.format(pid=pid_file)), containment=kind)
    daemon = await started(task, pid_file, strays)
    assert daemon not in [p.pid for p in psutil.Process(task.pid or 0).children(recursive=True)]
    # the shell, its sleep and the daemon's sleep (the daemon has exec'd once its pid is there)
    await wait_until(lambda: task.sample().process_count >= 3, timeout_s=WAIT_S, what="3")
    await asyncio.wait_for(task.terminate(1.0), WAIT_S)
    await asyncio.wait_for(task.wait(), WAIT_S)


def memory_cgroup(*, enforce_memory: bool) -> CgroupContainment:
    found = containment.try_cgroup(enforce_memory=enforce_memory)
    if not isinstance(found, CgroupContainment) or not found.memory:
        if isinstance(found, CgroupContainment):
            found.close()
        pytest.skip("no cgroup v2 memory controller for the worker here")
    return found


async def test_enforce_memory_makes_the_request_a_hard_limit(strays: list[int]) -> None:
    chosen = memory_cgroup(enforce_memory=True)
    try:
        grab = f"{sys.executable} -c \"x = b'x' * 400_000_000; print('survived')\""
        task = await start(spec(grab), containment=chosen, memory_limit_bytes=100_000_000)
        result = await asyncio.wait_for(task.wait(), WAIT_S)
        assert result.exit_status == "failure (SIGKILL)", task.tail("stdout")
        assert b"survived" not in task.tail("stdout")
    finally:
        chosen.close()


async def test_the_peak_is_the_cgroups_memory_peak(strays: list[int]) -> None:
    chosen = memory_cgroup(enforce_memory=False)
    try:
        grab = f"{sys.executable} -c \"x = b'x' * 150_000_000\""
        task = await start(spec(grab), containment=chosen)
        result = await asyncio.wait_for(task.wait(), WAIT_S)
        assert result.exit_status == "success"
        assert result.usage["peak_rss_bytes"] >= 150_000_000
    finally:
        chosen.close()


MOUNTINFO_HYBRID = [
    "35 24 0:31 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n",
    "36 35 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n",
    "41 35 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n",
]


def test_the_cgroup2_mount_and_its_favordynmods_option_are_read_from_mountinfo() -> None:
    found = cgroups.parse_mountinfo(MOUNTINFO_HYBRID)
    assert found == (Path("/sys/fs/cgroup/unified"), {"rw", "nsdelegate"})
    favoring = [*MOUNTINFO_HYBRID[:2], MOUNTINFO_HYBRID[2].replace("nsdelegate", "favordynmods")]
    found = cgroups.parse_mountinfo(favoring)
    assert found is not None and "favordynmods" in found[1]
    assert cgroups.parse_mountinfo(MOUNTINFO_HYBRID[:2]) is None  # v1 only
    assert cgroups.parse_mountinfo(["garbage\n", "1 2 - cgroup2\n"]) is None


def test_a_worker_without_favordynmods_says_how_to_avoid_the_wait_at_each_idle_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="worker.containment")
    try:
        chosen = containment.detect(kind="cgroup")
    except ValueError:
        pytest.skip("no writable cgroup v2 here")
    try:
        hinted = "favordynmods" in caplog.text
        assert hinted == (not cgroups.favors_dynmods())
    finally:
        chosen.close()
