"""How fast can one asyncio process start, capture and reap short commands?

    .venv/bin/python bench/spawn.py [--spawns N] [--in-flight K] [--quick]

For ``/bin/sh -c true`` and for ``true`` run directly, with stdout and stderr
on pipes and stdin from /dev/null, each in its own session, it compares:

- ``asyncio``: ``asyncio.create_subprocess_exec`` + ``communicate()`` (in
  3.11 the default child watcher is a thread per child);
- ``popen+pidfd``: ``subprocess.Popen(..., start_new_session=True)`` +
  ``os.pidfd_open`` + ``loop.add_reader`` on the pidfd and both pipes +
  ``os.wait4(pid, WNOHANG)``: no thread per child;
- ``popen+pidfd+pdeathsig``: the same with a ``preexec_fn`` calling
  ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (which stops CPython using vfork);
- ``posix_spawn+pidfd``: ``os.posix_spawn(setsid=True)``, a lower bound that
  has no ``cwd`` parameter in 3.11;
- ``runner``: ``worker.runner.start()`` itself, end to end (env, tails, usage).

Then the reference ``subprocess.run(['true'])`` loop and the ``runner`` run
in 2 processes at once (the 2-worker figure). Every loop is bounded by
``--spawns``; figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import printing
from worker.runner import TaskSpec, start

SH_TRUE = ["/bin/sh", "-c", "true"]
TRUE = ["true"]
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _pdeathsig() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


Spawner = Callable[[list[str]], Awaitable[None]]


async def spawn_asyncio(argv: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    await proc.communicate()


def _drain(loop: asyncio.AbstractEventLoop, fd: int, done: asyncio.Future[None]) -> None:
    def on_readable() -> None:
        if os.read(fd, 65536):
            return
        loop.remove_reader(fd)
        os.close(fd)
        done.set_result(None)

    loop.add_reader(fd, on_readable)


async def _pidfd_wait(pid: int, fds: list[int]) -> None:
    """Wait for ``pid`` to exit and both pipes to reach EOF, without a thread."""
    loop = asyncio.get_running_loop()
    pidfd = os.pidfd_open(pid)
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        os.wait4(pid, os.WNOHANG)
        exited.set_result(None)

    loop.add_reader(pidfd, on_exit)
    eofs = [loop.create_future() for _ in fds]
    for fd, eof in zip(fds, eofs, strict=True):
        _drain(loop, fd, eof)
    await asyncio.gather(exited, *eofs)


def _pipes() -> tuple[tuple[int, int], tuple[int, int]]:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    os.set_blocking(out_r, False)
    os.set_blocking(err_r, False)
    return (out_r, out_w), (err_r, err_w)


def make_popen(preexec: bool) -> Spawner:
    async def spawn(argv: list[str]) -> None:
        (out_r, out_w), (err_r, err_w) = _pipes()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                start_new_session=True,
                preexec_fn=_pdeathsig if preexec else None,
            )
        finally:
            os.close(out_w)
            os.close(err_w)
        await _pidfd_wait(proc.pid, [out_r, err_r])
        proc.returncode = 0  # reaped by wait4; tells Popen not to warn

    return spawn


_DEVNULL_FD = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


async def spawn_posix(argv: list[str]) -> None:
    (out_r, out_w), (err_r, err_w) = _pipes()
    path = argv[0] if "/" in argv[0] else "/usr/bin/" + argv[0]
    try:
        pid = os.posix_spawn(
            path,
            argv,
            os.environ,
            setsid=True,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, _DEVNULL_FD, 0),
                (os.POSIX_SPAWN_DUP2, out_w, 1),
                (os.POSIX_SPAWN_DUP2, err_w, 2),
            ],
        )
    finally:
        os.close(out_w)
        os.close(err_w)
    await _pidfd_wait(pid, [out_r, err_r])


async def spawn_runner(argv: list[str]) -> None:
    spec = TaskSpec(
        task_id="bench",
        attempt=1,
        command=" ".join(argv),
        env=None,
        cwd=None,
        max_termination_time_s=10.0,
    )
    result = await (await start(spec)).wait()
    assert result.exit_status == "success", result


SPAWNERS: dict[str, Spawner] = {
    "asyncio": spawn_asyncio,
    "popen+pidfd": make_popen(preexec=False),
    "popen+pidfd+pdeathsig": make_popen(preexec=True),
    "posix_spawn+pidfd": spawn_posix,
    "runner": spawn_runner,
}


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_spawner(spawner: Spawner, argv: list[str], spawns: int, in_flight: int) -> float:
    """Run ``spawns`` commands with ``in_flight`` at a time; return tasks/s."""
    remaining = spawns

    async def lane() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await spawner(argv)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(in_flight)))
    return spawns / (time.perf_counter() - started)


def measure(name: str, argv: list[str], spawns: int, in_flight: int) -> tuple[float, float]:
    """(tasks/s, parent CPU µs per task) for one spawner, on a fresh loop."""
    asyncio.run(run_spawner(SPAWNERS[name], argv, min(100, spawns), in_flight))  # warm-up
    cpu_before = cpu_s()
    rate = asyncio.run(run_spawner(SPAWNERS[name], argv, spawns, in_flight))
    return rate, (cpu_s() - cpu_before) / spawns * 1e6


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def sync_run_rate(spawns: int) -> float:
    started = time.perf_counter()
    for _ in range(spawns):
        subprocess.run(TRUE, check=True)
    return spawns / (time.perf_counter() - started)


def parallel(args: list[str], procs: int) -> float:
    """Run this script's ``--child`` mode in ``procs`` processes at once; sum of rates."""
    children = [
        subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE)
        for _ in range(procs)
    ]
    total = 0.0
    for child in children:
        out, _ = child.communicate(timeout=300)
        total += float(out.decode().split()[-1])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spawns", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="500 spawns, 1 round")
    parser.add_argument("--child", nargs=2, metavar=("SPAWNER", "ARGV"), help=argparse.SUPPRESS)
    printing.add_json_option(parser)
    args = parser.parse_args()
    spawns = 500 if args.quick else args.spawns
    if args.quick:
        args.rounds = 1

    if args.child:
        name, which = args.child
        if name == "subprocess.run":
            print(sync_run_rate(spawns))
        else:
            argv = SH_TRUE if which == "sh" else TRUE  # the runner adds sh -c to "true"
            print(measure(name, argv, spawns, args.in_flight)[0])
        return

    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f} at start; {spawns} spawns per round, {args.rounds} rounds "
        f"interleaved, {args.in_flight} in flight, stdout+stderr piped; best / median round"
    )
    cases = [
        (name, label, argv)
        for name in SPAWNERS
        for label, argv in (("/bin/sh -c true", SH_TRUE), ("true", TRUE))
        if name != "runner" or label == "true"  # the runner always adds /bin/sh -c
    ]
    rates: dict[tuple[str, str], list[float]] = {(n, lb): [] for n, lb, _ in cases}
    cpus: dict[tuple[str, str], list[float]] = {(n, lb): [] for n, lb, _ in cases}
    for _ in range(args.rounds):  # interleaved, so a noisy moment hits every case alike
        for name, label, argv in cases:
            rate, cpu_us = measure(name, argv, spawns, args.in_flight)
            rates[name, label].append(rate)
            cpus[name, label].append(cpu_us)
    print(f"{'mechanism':<24}{'command':<22}{'tasks/s':>16}{'parent CPU µs/task':>22}")
    for name, label, _ in cases:
        label_shown = "true (sh -c true)" if name == "runner" else label
        r, c = rates[name, label], cpus[name, label]
        print(
            f"{name:<24}{label_shown:<22}{max(r):>8.0f} /{median(r):>6.0f}"
            f"{min(c):>14.0f} /{median(c):>6.0f}"
        )

    print("\n2 processes at once (sum of both processes' rates; best / median round):")
    common = ["--spawns", str(spawns), "--in-flight", str(args.in_flight)]
    parallel_cases = [
        ("subprocess.run, sequential", ["subprocess.run", "true"], "true"),
        ("asyncio", ["asyncio", "sh"], "/bin/sh -c true"),
        ("popen+pidfd", ["popen+pidfd", "sh"], "/bin/sh -c true"),
        ("posix_spawn+pidfd", ["posix_spawn+pidfd", "sh"], "/bin/sh -c true"),
        ("runner", ["runner", "true"], "true (sh -c true)"),
    ]
    totals: dict[str, list[float]] = {label: [] for label, _, _ in parallel_cases}
    for _ in range(args.rounds):
        for label, child, _ in parallel_cases:
            totals[label].append(parallel([*common, "--child", *child], 2))
    for label, _, command in parallel_cases:
        t = totals[label]
        print(f"{label:<28}{command:<22}{max(t):>8.0f} /{median(t):>6.0f}")
    report = printing.Report("spawn", quick=args.quick)
    report.add(
        "runner.start() of `true`, 1 process (best round)", max(rates["runner", "true"]), "spawns/s"
    )
    report.add(
        "runner.start() of `true`, 2 processes (best round)", max(totals["runner"]), "spawns/s"
    )
    report.write(args.json)


if __name__ == "__main__":
    main()
