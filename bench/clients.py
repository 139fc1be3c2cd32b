"""Processes a benchmark starts besides the server: its own ``--child`` mode
(clients spread over several processes, talking JSON lines over pipes), and
ending any process it started, by its ``Popen``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Any


def stop_process(
    proc: subprocess.Popen[bytes], log_handle: Any = None, *, grace_s: float
) -> int | None:
    """SIGTERM the process this bench started, wait up to ``grace_s``, then
    SIGKILL; close its log file; returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if log_handle is not None:
        log_handle.close()
    return proc.returncode


async def start_child(script: str, *args: str) -> asyncio.subprocess.Process:
    """``python SCRIPT ARGS`` (a bench's own ``--child`` mode) with pipes: it
    answers in JSON lines on stdout and takes commands on stdin."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        script,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=2**28,  # one line may carry every latency sample
    )


async def start_children(
    children: list[asyncio.subprocess.Process],
    script: str,
    url: str,
    token: str,
    *,
    total: int,
    processes: int,
) -> None:
    """Spread ``total`` clients (subscribers, simulated workers) over
    ``processes`` children ``python SCRIPT --child URL TOKEN FIRST COUNT``,
    appending each to ``children`` as it starts, so that the caller's cleanup
    reaps the ones started before a failure."""
    first = 0
    for i in range(processes):
        count = total // processes + (i < total % processes)
        children.append(await start_child(script, "--child", url, token, str(first), str(count)))
        first += count


async def read_json_line(proc: asyncio.subprocess.Process, timeout_s: float) -> dict[str, Any]:
    """The child's next JSON line, waiting at most ``timeout_s``."""
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout_s)
    if not line:
        raise RuntimeError(f"child process {proc.pid} exited with {await proc.wait()}")
    result: dict[str, Any] = json.loads(line)
    return result


async def tell(proc: asyncio.subprocess.Process, line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line.encode() + b"\n")
    await proc.stdin.drain()


async def reap(children: Sequence[asyncio.subprocess.Process], timeout_s: float = 10.0) -> None:
    """Wait for the children this bench started; SIGKILL one still running after ``timeout_s``."""
    for child in children:
        if child.returncode is None:
            try:
                await asyncio.wait_for(child.wait(), timeout_s)
            except TimeoutError:
                child.kill()
                await child.wait()
