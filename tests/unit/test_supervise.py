"""Supervised side tasks (``banyan.supervise``): a failing side task is logged
and handed to the failure policy, whose default stops the process cleanly
with a non-zero exit; cancellation and success are not failures."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap

import pytest

from banyan.supervise import EXIT_SIDE_TASK_FAILED, SideTasks


class Boom(Exception):
    pass


async def fail() -> None:
    await asyncio.sleep(0)
    raise Boom("side task bug")


async def test_a_failure_is_logged_and_handed_to_the_policy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[tuple[str, BaseException]] = []
    failed = asyncio.Event()

    def policy(name: str, exc: BaseException) -> None:
        seen.append((name, exc))
        failed.set()

    side = SideTasks("worker", on_failure=policy)
    with caplog.at_level(logging.ERROR, logger="banyan.supervise"):
        side.spawn(fail(), name="follow abc")
        await asyncio.wait_for(failed.wait(), 10)
    ((name, exc),) = seen
    assert name == "worker: follow abc"
    assert isinstance(exc, Boom)
    assert side.failures == seen
    (record,) = [r for r in caplog.records if r.name == "banyan.supervise"]
    assert "worker: follow abc" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[1] is exc
    assert len(side) == 0  # no longer held once done


async def test_success_and_cancellation_are_not_failures() -> None:
    seen: list[str] = []
    side = SideTasks("gateway", on_failure=lambda name, exc: seen.append(name))
    release = asyncio.Event()

    async def ok() -> int:
        await release.wait()
        return 1

    async def forever() -> None:
        await asyncio.Event().wait()

    done = side.spawn(ok())
    stuck = side.spawn(forever())
    assert len(side) == 2  # held by a strong reference while they run
    assert done.get_name() == "gateway: test_success_and_cancellation_are_not_failures.<locals>.ok"
    release.set()
    assert await done == 1
    await side.close(timeout_s=10)
    assert stuck.cancelled()
    assert seen == [] and side.failures == []
    assert len(side) == 0


def test_the_default_policy_stops_the_process_cleanly_and_non_zero() -> None:
    script = textwrap.dedent(
        """
        import asyncio, logging
        from banyan.supervise import SideTasks

        async def bug():
            raise ValueError("side task bug")

        async def main():
            side = SideTasks("worker")
            side.spawn(bug(), name="follow")
            try:
                await asyncio.Event().wait()  # the main loop, which never ends by itself
            finally:
                print("main loop cleaned up", flush=True)

        logging.basicConfig(level=logging.INFO)
        asyncio.run(main())
        print("not reached")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == EXIT_SIDE_TASK_FAILED, done
    assert done.stdout == "main loop cleaned up\n", done
    assert "side task 'worker: follow' failed" in done.stderr
    assert "ValueError: side task bug" in done.stderr
