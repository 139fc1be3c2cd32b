"""Supervised side tasks for the server's and the worker's long-running loops.

A bare ``asyncio.create_task`` whose exception nobody reads dies silently: the
loop it served goes on as if nothing happened (a worker whose follow task
died never reports its attempt; a gateway whose silence monitor died never
declares a worker lost). As in arq and procrastinate, every side task here is
named, kept referenced while it runs, and watched: when one fails, the
failure is logged with its traceback and handed to ``on_failure``, which by
default fails fast by stopping the process with a non-zero exit
(:func:`exit_process`). Cancellation is not a failure.

Shared by ``server`` and ``worker``, so it lives in ``banyan`` and imports
nothing but asyncio and logging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

log = logging.getLogger(__name__)

EXIT_SIDE_TASK_FAILED = 70  # EX_SOFTWARE: an internal error, not bad input or the network


class SideTaskFailed(SystemExit):
    """Raised from the event loop when a side task failed: like ``SystemExit``
    it leaves ``loop.run_until_complete`` (``asyncio.run``, ``web.run_app``),
    whose cleanup cancels the main task, so its ``finally`` blocks and the
    app's cleanup contexts still run; the process then exits with
    :data:`EXIT_SIDE_TASK_FAILED`."""

    def __init__(self, name: str) -> None:
        super().__init__(EXIT_SIDE_TASK_FAILED)
        self.name = name


def exit_process(name: str, exc: BaseException) -> NoReturn:
    """The default failure policy: stop the whole process, cleanly, non-zero."""
    raise SideTaskFailed(name) from exc


FailurePolicy = Callable[[str, BaseException], None]


class SideTasks:
    """The side tasks of one owner (``"gateway"``, ``"worker"``).

    ``spawn`` starts one; ``close`` cancels those still running and waits for
    them at most ``timeout_s``. ``on_failure(name, exc)`` runs in the event
    loop when one raises; what it raises leaves the loop.
    """

    def __init__(self, owner: str, *, on_failure: FailurePolicy = exit_process) -> None:
        self.owner = owner
        self._on_failure = on_failure
        self._tasks: set[asyncio.Task[Any]] = set()
        self.failures: list[tuple[str, BaseException]] = []

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Awaitable[Any], *, name: str | None = None) -> asyncio.Task[Any]:
        """Start ``work`` as a watched task named ``name`` (default: the coroutine's name)."""
        task = asyncio.ensure_future(work)
        task.set_name(f"{self.owner}: {name or _name_of(work)}")
        self._tasks.add(task)  # a strong reference: the loop keeps only weak ones
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        name = task.get_name()
        log.error("side task %r failed; stopping", name, exc_info=exc)
        self.failures.append((name, exc))
        self._on_failure(name, exc)

    async def close(self, *, timeout_s: float = 5.0) -> None:
        """Cancel what still runs and wait for it, at most ``timeout_s``."""
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        if pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait(pending, timeout=timeout_s)


def _name_of(work: Awaitable[Any]) -> str:
    qualname = getattr(work, "__qualname__", None)
    return str(qualname) if qualname else type(work).__name__
