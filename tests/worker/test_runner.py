"""The task runner and the reaper sidecar, with real subprocesses.

Every wait is bounded (``asyncio.wait_for`` or a polling deadline) and every
test is under a pytest-timeout; the ``run`` fixture SIGKILLs, at teardown, any
task group a failing test left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest

from worker.cli import warn_if_tasks_can_read_admin_token
from worker.reaper import Reaper, serve
from worker.runner import Result, RunningTask, TaskSpec, exit_status_of, signal_name, start
from worker.spec import STRIPPED_NAMES

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 10.0  # bound on any single wait for a result


def spec(
    command: str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    grace_s: float = 5.0,
    gpus: Sequence[int] = (),
    extra_env: Mapping[str, str] | None = None,
) -> TaskSpec:
    return TaskSpec(
        task_id="t-1",
        attempt=2,
        command=command,
        env=env,
        cwd=cwd,
        max_termination_time_s=grace_s,
        gpus=gpus,
        extra_env=extra_env or {},
    )


def running_in_group(pgid: int) -> list[psutil.Process]:
    """Processes of group ``pgid`` that still run (zombies are dead, only unreaped)."""
    found = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.02)


async def wait_until_async(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.02)


Run = Callable[..., Awaitable[RunningTask]]


@pytest.fixture
async def run() -> AsyncIterator[Run]:
    """``await run(spec, **start_kwargs)``; leftovers are killed at teardown."""
    started: list[RunningTask] = []

    async def _run(task_spec: TaskSpec, **kwargs: Any) -> RunningTask:
        task = await start(task_spec, **kwargs)
        started.append(task)
        return task

    yield _run
    for task in started:
        if not task.done:
            task.kill()
            await asyncio.wait_for(task.wait(), WAIT_S)


async def result_of(task: RunningTask) -> Result:
    return await asyncio.wait_for(task.wait(), WAIT_S)


# --- exit statuses ----------------------------------------------------------------


async def test_success(run: Run) -> None:
    result = await result_of(await run(spec("true")))
    assert (result.exit_status, result.exit_code, result.error) == ("success", 0, None)
    # peak_rss_bytes only when the shell could be measured before it ended
    assert {"cpu_user_s", "cpu_system_s", "wall_s"} <= set(result.usage)
    assert set(result.usage) <= {"peak_rss_bytes", "cpu_user_s", "cpu_system_s", "wall_s"}
    assert 0 < result.usage["wall_s"] < WAIT_S


async def test_non_zero_exit_code(run: Run) -> None:
    result = await result_of(await run(spec("exit 3")))
    assert (result.exit_status, result.exit_code) == ("failure", 3)


async def test_killed_by_a_signal(run: Run) -> None:
    result = await result_of(await run(spec("kill -SEGV $$")))
    assert (result.exit_status, result.exit_code) == ("failure (SIGSEGV)", None)


async def test_kill_is_an_immediate_sigkill_of_the_group(run: Run) -> None:
    task = await run(spec("sleep 1000 & sleep 1000"))
    task.kill()
    result = await result_of(task)
    assert result.exit_status == "failure (SIGKILL)"
    assert task.pgid is not None and running_in_group(task.pgid) == []


def test_exit_status_strings() -> None:
    assert exit_status_of(0) == ("success", 0)
    assert exit_status_of(2 << 8) == ("failure", 2)
    assert exit_status_of(signal.SIGKILL) == ("failure (SIGKILL)", None)
    assert signal_name(signal.SIGRTMIN + 3) == "SIGRTMIN+3"


async def test_command_that_cannot_start_is_a_failure_result(run: Run, tmp_path: Path) -> None:
    missing = tmp_path / "no such dir"
    task = await run(spec("true", cwd=str(missing)))
    result = await result_of(task)
    assert (result.exit_status, result.exit_code) == ("failure", None)
    assert result.error is not None and str(missing) in result.error
    assert task.pid is None
    await task.terminate()  # harmless on a task that never ran
    task.kill()
    assert task.sample().rss_bytes == 0


async def test_a_command_with_a_nul_byte_is_a_failure_result(run: Run) -> None:
    result = await result_of(await run(spec("echo a\0b")))
    assert (result.exit_status, result.exit_code) == ("failure", None)
    assert result.error is not None and "null" in result.error


async def test_unknown_command_is_the_shells_exit_127(run: Run) -> None:
    result = await result_of(await run(spec("no-such-command-banyan")))
    assert (result.exit_status, result.exit_code, result.error) == ("failure", 127, None)


# --- output -----------------------------------------------------------------------


async def test_stdout_and_stderr_are_captured_apart_and_streamed(run: Run) -> None:
    chunks: list[tuple[str, bytes]] = []
    task = await run(
        spec("printf 'to out'; printf 'to err' >&2; printf ' again'"),
        on_output=lambda stream, chunk: chunks.append((stream, chunk)),
    )
    assert (await result_of(task)).exit_status == "success"
    assert task.tail("stdout") == b"to out again"
    assert task.tail("stderr") == b"to err"
    assert b"".join(c for s, c in chunks if s == "stdout") == b"to out again"
    assert b"".join(c for s, c in chunks if s == "stderr") == b"to err"
    assert task.dropped_bytes("stdout") == task.dropped_bytes("stderr") == 0


async def test_output_arrives_while_the_command_runs(run: Run) -> None:
    seen = asyncio.Event()
    task = await run(spec("echo first; sleep 1000"), on_output=lambda stream, chunk: seen.set())
    await asyncio.wait_for(seen.wait(), WAIT_S)
    assert task.tail("stdout") == b"first\n" and not task.done


async def test_log_tail_is_bounded_and_keeps_the_end(run: Run) -> None:
    streamed = [0]
    total = 3_000_000
    task = await run(
        spec(f"head -c {total} /dev/zero; printf THE-END; printf E >&2"),
        max_log_bytes=1000,
        on_output=lambda stream, chunk: streamed.__setitem__(0, streamed[0] + len(chunk)),
    )
    assert (await result_of(task)).exit_status == "success"
    tail = task.tail("stdout")
    assert len(tail) == 1000 and tail.endswith(b"\0THE-END")
    assert task.dropped_bytes("stdout") == total + len("THE-END") - 1000
    assert (task.tail("stderr"), task.dropped_bytes("stderr")) == (b"E", 0)
    assert streamed[0] == total + len("THE-END") + 1  # the callback saw everything


async def test_a_failing_output_callback_does_not_stop_the_capture(
    run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(stream: str, chunk: bytes) -> None:
        raise RuntimeError("consumer bug")

    task = await run(spec("echo hello"), on_output=broken)
    assert (await result_of(task)).exit_status == "success"
    assert task.tail("stdout") == b"hello\n"
    assert "on_output failed" in caplog.text


async def test_a_background_child_does_not_outlive_the_shell(run: Run) -> None:
    # It holds stdout open: without killing the rest of the group the result
    # would wait for it (or it would linger as an orphan).
    task = await run(spec("sleep 1000 & echo $!"))
    result = await result_of(task)
    assert result.exit_status == "success"
    child_pid = int(task.tail("stdout"))
    # Its pipe closes a moment before the kernel marks it dead.
    await wait_until_async(lambda: gone(child_pid), timeout_s=2, what="background child gone")


async def test_a_process_that_left_the_group_cannot_hold_the_result_back(
    run: Run, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pid_file = tmp_path / "escaped.pid"
    # The shell ends only once the escapee has its own session (it writes its
    # pid after setsid), still holding the task's stdout.
    task = await run(
        spec(
            f"setsid sh -c 'echo $$ > {pid_file}.tmp; mv {pid_file}.tmp {pid_file};"
            f" exec sleep 1000' & while [ ! -s {pid_file} ]; do sleep 0.01; done"
        )
    )
    try:
        result = await result_of(task)  # after PIPE_DRAIN_TIMEOUT_S, not never
        assert result.exit_status == "success"
        assert "a process left the group" in caplog.text
    finally:
        if pid_file.exists():  # outside the group: ours to end by hand
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


# --- environment --------------------------------------------------------------------


async def test_env_cwd_gpus_and_banyan_variables(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANYAN_TEST_INHERITED", "from-worker")
    monkeypatch.setenv("BANYAN_TEST_OVERRIDDEN", "from-worker")
    command = (
        'printf "%s\\n" "$BANYAN_TEST_INHERITED" "$BANYAN_TEST_OVERRIDDEN" "$FOO" "$(pwd)" '
        '"$BANYAN_TASK_ID" "$BANYAN_ATTEMPT" "$CUDA_VISIBLE_DEVICES" "$BANYAN_PROGRESS_URL"'
    )
    task = await run(
        spec(
            command,
            env={"FOO": "bar baz", "BANYAN_TEST_OVERRIDDEN": "from-task"},
            cwd=str(tmp_path),
            gpus=(0, 2),
            extra_env={"BANYAN_PROGRESS_URL": "http://127.0.0.1:1/progress"},
        )
    )
    assert (await result_of(task)).exit_status == "success"
    assert task.tail("stdout").decode().splitlines() == [
        "",  # the worker's BANYAN_* variables never reach a task
        "from-task",
        "bar baz",
        str(tmp_path),
        "t-1",
        "2",
        "0,2",
        "http://127.0.0.1:1/progress",
    ]


async def test_the_workers_token_and_settings_never_reach_a_task(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {name: f"worker-{name}" for name in STRIPPED_NAMES}
    secrets |= {"BANYAN_PORT": "5999", "BANYAN_DB": "/x.db", "BANYAN_SOMETHING_NEW": "s"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("UNRELATED", "kept")
    task = await run(
        spec(
            "env",
            env={"BANYAN_TASK_INDEX": "3", "BANYAN_ENTRY": "e"},
            extra_env={"BANYAN_PROGRESS_SOCKET": "/tmp/p.sock"},
            gpus=(1,),
        )
    )
    assert (await result_of(task)).exit_status == "success"
    env = dict(line.split("=", 1) for line in task.tail("stdout").decode().splitlines())
    assert {k: v for k, v in env.items() if k.startswith("BANYAN_")} == {
        "BANYAN_TASK_ID": "t-1",
        "BANYAN_ATTEMPT": "2",
        "BANYAN_PROGRESS_SOCKET": "/tmp/p.sock",
        "BANYAN_TASK_INDEX": "3",
        "BANYAN_ENTRY": "e",
    }
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["UNRELATED"] == "kept"
    assert not any(value in env.values() for value in secrets.values())


async def test_no_gpus_leaves_cuda_visible_devices_alone(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    task = await run(spec('printf "%s" "${CUDA_VISIBLE_DEVICES-unset}"'))
    assert (await result_of(task)).exit_status == "success"
    assert task.tail("stdout") == b"unset"


async def test_stdin_is_dev_null(run: Run) -> None:
    task = await run(spec("cat; echo done"))
    assert (await result_of(task)).exit_status == "success"
    assert task.tail("stdout") == b"done\n"


async def test_the_command_has_its_own_process_group_and_session(run: Run) -> None:
    task = await run(spec("sleep 1000"))
    assert task.pid is not None and task.pgid == task.pid
    assert os.getpgid(task.pid) == task.pid != os.getpgrp()
    assert os.getsid(task.pid) == task.pid
    await task.terminate(0.5)


@pytest.mark.parametrize("with_cwd", [False, True], ids=["posix_spawn", "popen"])
async def test_both_ways_of_spawning_start_the_shell_alike(
    run: Run, tmp_path: Path, with_cwd: bool
) -> None:
    # Without a cwd the shell comes from os.posix_spawn, with one from Popen.
    # No pipeline: while the shell sets one up it holds the pipe's ends itself.
    command = "grep SigIgn /proc/$$/status; pwd; ls /proc/$$/fd"
    task = await run(spec(command, cwd=str(tmp_path) if with_cwd else None))
    assert (await result_of(task)).exit_status == "success"
    ignored, cwd, *fd_lines = task.tail("stdout").decode().splitlines()
    fds = " ".join(sorted(fd_lines, key=int))
    mask = int(ignored.split()[1], 16)
    for signum in (signal.SIGPIPE, signal.SIGXFSZ):  # ignored by Python, not by the task
        assert not mask & (1 << (signum - 1)), signal.Signals(signum).name
    assert fds.split() == ["0", "1", "2"]  # no descriptor of the worker's leaks in
    assert cwd == (str(tmp_path) if with_cwd else os.getcwd())


# --- termination --------------------------------------------------------------------


async def assert_terminated_within(task: RunningTask, grace_s: float) -> float:
    assert task.pgid is not None
    started = time.monotonic()
    await asyncio.wait_for(task.terminate(grace_s), grace_s + 1.0)
    elapsed_s = time.monotonic() - started
    assert running_in_group(task.pgid) == []  # gone when terminate() returns
    assert (await result_of(task)).exit_status == "cancelled"
    return elapsed_s


async def test_terminate_sleep(run: Run) -> None:
    task = await run(spec("sleep 1000"))
    assert await assert_terminated_within(task, 5.0) < 1.0  # SIGTERM suffices


async def test_terminate_a_shell_with_background_children(run: Run) -> None:
    task = await run(spec("sleep 1000 & sleep 1000 & wait"))
    assert task.pgid is not None
    await wait_until_async(
        lambda: len(running_in_group(task.pgid or 0)) == 3, timeout_s=5, what="3 processes"
    )
    assert await assert_terminated_within(task, 5.0) < 1.0


async def test_a_command_ignoring_sigterm_is_killed_after_the_grace(run: Run) -> None:
    task = await run(spec("trap '' TERM; sleep 1000 & sleep 1000"))
    await wait_until_async(
        lambda: len(running_in_group(task.pgid or 0)) >= 2, timeout_s=5, what="2 processes"
    )
    assert await assert_terminated_within(task, 0.5) >= 0.5


async def test_terminate_uses_max_termination_time_by_default(run: Run) -> None:
    task = await run(spec("trap '' TERM; sleep 1000", grace_s=0.3))
    await wait_until_async(  # SIGTERM before the trap is set would just work
        lambda: any(p.name() == "sleep" for p in running_in_group(task.pgid or 0)),
        timeout_s=5,
        what="sleep running",
    )
    started = time.monotonic()
    await asyncio.wait_for(task.terminate(), 2.0)
    assert time.monotonic() - started >= 0.3
    assert (await result_of(task)).exit_status == "cancelled"


async def test_concurrent_terminates_share_one_termination(run: Run) -> None:
    task = await run(spec("sleep 1000"))
    await asyncio.wait_for(asyncio.gather(task.terminate(1), task.terminate(1)), 3.0)
    assert (await result_of(task)).exit_status == "cancelled"


async def test_terminate_after_the_end_changes_nothing(run: Run) -> None:
    task = await run(spec("exit 4"))
    await result_of(task)
    await task.terminate(1)
    assert (await result_of(task)).exit_status == "failure"


# --- usage --------------------------------------------------------------------------


async def test_sample_and_peak_rss_of_a_50_mb_process(run: Run) -> None:
    task = await run(
        spec(
            f'{sys.executable} -c "x = bytearray(50_000_000); import time; time.sleep(2)"'
            " & wait"  # the shell stays the parent: the tree is two processes
        )
    )
    samples = []

    def big_enough() -> bool:
        samples.append(task.sample())
        return samples[-1].rss_bytes >= 40_000_000

    await wait_until_async(big_enough, timeout_s=5, what="sampled RSS >= 40 MB")
    assert samples[-1].process_count == 2 and samples[-1].time > time.time() - 5
    result = await result_of(task)
    assert result.exit_status == "success"
    assert result.usage["peak_rss_bytes"] >= 40_000_000
    assert result.usage["cpu_user_s"] + result.usage["cpu_system_s"] > 0
    assert task.sample().rss_bytes == 0  # ended


def own_rss_bytes() -> int:
    """This process's RSS: it plays the worker, which spawns the tasks."""
    return int(psutil.Process().memory_info().rss)


@pytest.mark.parametrize("command", ["echo w", "sleep 0.3"])
async def test_peak_rss_of_a_small_task_is_not_the_workers(run: Run, command: str) -> None:
    # ru_maxrss of a vforked child counts the parent's pages it borrowed
    # before exec: it said ~49 MiB for `echo w` under a real worker.
    ballast = b"x" * 64_000_000  # make the "worker" clearly bigger than any shell
    task = await run(spec(command))
    if command.startswith("sleep"):
        task.sample()
    result = await result_of(task)
    assert result.exit_status == "success"
    # `echo` may end before even the first look: then there is no figure at all.
    peak = result.usage["peak_rss_bytes"] if command.startswith("sleep") else None
    assert result.usage.get("peak_rss_bytes", 1) < 16_000_000 < own_rss_bytes()
    assert peak is None or peak > 0
    del ballast


async def test_peak_rss_between_samples_counts_a_processes_own_peak(
    run: Run, tmp_path: Path
) -> None:
    # 200 MB held, then freed before the only sample: the process's own
    # high-water mark (VmHWM) still shows it.
    go = tmp_path / "go"
    code = (
        "import os, sys, time\n"
        "x = b'x' * 200_000_000\n"
        "del x\n"
        "print('freed', flush=True)\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
    )
    script = tmp_path / "alloc.py"
    script.write_text(code)
    seen: list[bytes] = []
    task = await run(
        spec(f"{sys.executable} {script}"), on_output=lambda stream, chunk: seen.append(chunk)
    )
    await wait_until_async(lambda: b"freed" in b"".join(seen), timeout_s=WAIT_S, what="freed")
    sample = task.sample()
    assert sample.rss_bytes < 100_000_000  # now small...
    go.touch()
    result = await result_of(task)
    assert result.exit_status == "success"
    assert result.usage["peak_rss_bytes"] >= 200_000_000  # ...but it peaked at 200 MB


async def test_peak_rss_of_a_big_task_without_any_sample(run: Run) -> None:
    # Bigger than this process (the worker): rusage tells the task's peak.
    worker_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    n_bytes = worker_peak + 100_000_000
    result = await result_of(await run(spec(f"{sys.executable} -c \"x = b'x' * {n_bytes}\"")))
    assert result.exit_status == "success"
    assert result.usage["peak_rss_bytes"] >= n_bytes


async def test_cpu_percent_of_a_busy_tree(run: Run) -> None:
    task = await run(spec(f'{sys.executable} -c "while True: pass" & wait'))
    task.sample()
    await asyncio.sleep(0.5)  # the measuring interval itself, not a wait for a condition
    busy = task.sample()
    # A loaded shared machine may give the loop well under one core.
    assert 10 < busy.cpu_percent < 250
    await task.terminate(1)


# --- the reaper ---------------------------------------------------------------------

WORKER_LIKE = textwrap.dedent(
    """
    import asyncio, sys
    from worker.reaper import Reaper, serve
    from worker.runner import TaskSpec, start

    async def main():
        reaper = Reaper.start()
        spec = TaskSpec(task_id="r", attempt=1, command="sleep 1000 & sleep 1000",
                        env=None, cwd=None, max_termination_time_s=1.0)
        task = await start(spec, reaper=reaper)
        print(task.pgid, reaper.pid, flush=True)
        if sys.argv[1] == "exit":
            return  # a normal exit without closing anything
        await asyncio.sleep(1000)

    asyncio.run(main())
    """
)


def start_worker_like(mode: str) -> tuple[subprocess.Popen[str], int, int]:
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER_LIKE, mode], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert worker.stdout is not None
    pgid, reaper_pid = (int(n) for n in worker.stdout.readline().split())
    worker.stdout.close()
    return worker, pgid, reaper_pid


@pytest.mark.parametrize("mode", ["sigkill", "exit"])
def test_the_reaper_kills_the_tasks_of_a_dead_worker(mode: str) -> None:
    worker, pgid, reaper_pid = start_worker_like(mode)
    try:
        if mode == "sigkill":
            wait_until(lambda: len(running_in_group(pgid)) >= 2, timeout_s=5, what="2 sleeps")
            worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=WAIT_S)
        wait_until(lambda: running_in_group(pgid) == [], timeout_s=5, what="task group gone")
        wait_until(lambda: gone(reaper_pid), timeout_s=5, what="reaper exited")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        for proc in running_in_group(pgid):  # only if the reaper failed: ours to end
            proc.kill()


async def test_the_runner_registers_and_unregisters_with_the_reaper(run: Run) -> None:
    with Reaper.start() as reaper:
        assert reaper.alive
        task = await run(spec("sleep 1000"), reaper=reaper)
        assert reaper.registered == {task.pgid}
        await task.terminate(1)
        assert reaper.registered == frozenset()
        result = await result_of(await run(spec("true"), reaper=reaper))
        assert result.exit_status == "success" and reaper.registered == frozenset()
    assert not reaper.alive


async def test_closing_the_reaper_kills_what_is_still_registered(run: Run) -> None:
    reaper = Reaper.start()
    task = await run(spec("sleep 1000"), reaper=reaper)
    reaper.close()
    result = await result_of(task)
    assert result.exit_status == "failure (SIGKILL)"
    assert not reaper.alive


def test_the_reaper_protocol_ignores_what_is_not_a_registration() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"+5\n-5\n+7\nnonsense\n+\n-x\n+8")  # "+8" never ended its line
    os.close(write_end)
    try:
        assert serve(read_end) == {7}
    finally:
        os.close(read_end)


def test_the_worker_warns_when_tasks_can_read_the_admin_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client_file = tmp_path / "client.json"
    monkeypatch.setenv("BANYAN_CLIENT_FILE", str(client_file))
    log = logging.getLogger("worker-test")
    assert not warn_if_tasks_can_read_admin_token(log)  # no file
    client_file.write_text('{"server": "http://127.0.0.1:1", "token": "byn_x"}')
    assert warn_if_tasks_can_read_admin_token(log)
    assert "can read the admin token in " + str(client_file) in caplog.text
