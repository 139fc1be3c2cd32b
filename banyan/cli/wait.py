"""``banyan wait``: wait until tasks end; the exit status says how they ended.

It listens to the event feed for the tasks' state changes and also
re-reads the unfinished ones every ``POLL_S`` seconds, so an event missed
while the feed connects (or while it reconnects) costs at most that del
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

from banyan.cli.context import Context, UsageError, check_ids
from banyan.cli.output import warn
from banyan.client.format import (
    outcome,
)
from banyan.client.ids import resolve_ids, resolve_job
from banyan.client.trees import IDS_PER_QUERY, fetch_many
from banyan.documents import ExecutionDoc, TaskDoc
from banyan.errors import BanyanError, NotFound
from banyan.units import parse_duration

T = TypeVar("T")

if TYPE_CHECKING:
    import asyncio

    from rich.progress import Progress

    from banyan.client.http import Client

POLL_S = 2.0
# After this long, the progress line (or, without a terminal, one stderr
# line) says why the first task still waiting waits.
REASON_AFTER_S = 5.0


FIRST_POLL_S = 0.5


EXIT_OK, EXIT_FAILED, EXIT_ERROR, EXIT_TIMEOUT = 0, 1, 2, 3
FINAL = frozenset({"terminated", "cancelled"})


_PROJECTION = {"name": 1, "state": 1, "execution": 1, "pending_dependency_count": 1}


WAIT_EPILOG = """\
examples:
  banyan wait 6650f0c2a1b2c3d4e5f60718
  banyan wait $(banyan submit --array 1-10 -- ./step.sh) --timeout 1h
  banyan wait --job 6650f0c2a1b2c3d4e5f60718   # every task of the job
  banyan submit --wait -- ./quick.sh

exit status:
  0  every task succeeded
  1  a task failed or was cancelled (or an id is unknown)
  2  connection or authentication error, invalid input
  3  --timeout passed before every task ended
"""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "wait",
        parents=parents,
        help="wait for tasks to end; the exit status says how they ended",
        description="Wait until every task has ended (terminated or cancelled).",
        epilog=WAIT_EPILOG,
        formatter_class=raw,
    )
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--job", metavar="ID", help="every task of this job")
    p.add_argument("--timeout", metavar="S", help='give up after this long: seconds or "10m"')
    p.set_defaults(handler=run_wait)


def _timeout_s(value: str | float | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"--timeout: {exc}") from None


async def _follow_feed(
    client: Client, ids: list[str], queue: asyncio.Queue[dict[str, Any]]
) -> None:
    """Put each ``task.state`` event of these tasks on ``queue``; errors end it
    quietly (the poll notices the same problem and reports it)."""
    from banyan.events import TaskState

    wanted = set(ids)
    where = {"_id": {"$in": ids}} if len(ids) <= IDS_PER_QUERY else None
    with contextlib.suppress(BanyanError):
        events = closable(client.typed_events(where=where, types=["task.state"]))
        async with contextlib.aclosing(events) as feed:
            async for event in feed:
                if isinstance(event, TaskState) and event.data.id in wanted:
                    queue.put_nowait(event.data.dump())


def closable(events: AsyncIterator[T]) -> AsyncGenerator[T, None]:
    """``Client.events`` is an async generator: close it (and its websocket) when done."""
    return cast(AsyncGenerator[T, None], events)


def _apply(tasks: dict[str, TaskDoc], data: dict[str, Any], stale: set[str]) -> None:
    """Update a task from its event; ``stale`` collects the ids whose other
    fields (exit code...) are now older than their state."""
    task = tasks.get(data["_id"])
    if task is None or "state" not in data:
        return
    stale.add(data["_id"])
    task["state"] = data["state"]
    execution: ExecutionDoc = {**(task.get("execution") or {})}
    if data["state"] == "running":
        execution.update({"exit_status": None, "exit_code": None, "worker": data.get("worker")})
    if "exit_status" in data:
        execution["exit_status"] = data["exit_status"]
    task["execution"] = execution


@contextlib.contextmanager
def _progress(ctx: Context, total: int) -> Iterator[Progress | None]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    if not ctx.out.is_terminal or ctx.out.json_mode:
        yield None
        return
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=ctx.out.console,
        transient=True,
    )
    with bar:
        yield bar


def _describe(tasks: dict[str, TaskDoc]) -> str:
    counts: dict[str, int] = {}
    for task in tasks.values():
        key = outcome(task) if task["state"] in FINAL else task["state"]
        counts[key] = counts.get(key, 0) + 1
    order = ["running", "available", "inactive", "pending_cancellation"]
    order += ["success", "failed", "cancelled"]
    return ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k))


async def _why_waiting(client: Client, tasks: dict[str, TaskDoc], pending: list[str]) -> str:
    """``"<id>: <reason>"`` for the first task that waits to run, or ``""``
    when every unfinished task runs. The server's message is shown as it is."""
    for task_id in pending:
        if tasks[task_id]["state"] in ("inactive", "available"):
            try:
                found = await client.pending_reason(task_id)
            except NotFound:
                return ""
            return f"{task_id}: {found.get('reason', '')}"
    return ""


async def wait_for_tasks(ctx: Context, ids: list[str], *, timeout: str | float | None) -> int:
    """Wait until every task has ended; the exit status of ``banyan wait``."""
    import asyncio

    timeout_s = _timeout_s(timeout)
    started = time.monotonic()
    deadline = None if timeout_s is None else started + timeout_s
    why = ""
    told = False
    async with ctx.client() as client:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        feed = asyncio.create_task(_follow_feed(client, ids, queue))
        try:
            tasks = await fetch_many(client, ids, projection=_PROJECTION)
            missing = [i for i in ids if i not in tasks]
            if missing:
                raise NotFound(f"no task with id {missing[0]}")
            held = [
                i
                for i, t in tasks.items()
                if t["state"] == "inactive" and not t.get("pending_dependency_count")
            ]
            for task_id in held:
                warn(f"task {task_id} is inactive: it will not run until made available")
            timed_out = False
            stale: set[str] = set()
            # The first re-read comes soon: it covers events sent before the feed connected.
            next_poll = time.monotonic() + FIRST_POLL_S
            with _progress(ctx, len(ids)) as bar:
                progress_id = bar.add_task("waiting", total=len(ids)) if bar else None
                while True:
                    pending = [i for i in ids if tasks[i]["state"] not in FINAL]
                    if bar is not None and progress_id is not None:
                        done = len(ids) - len(pending)
                        shown = _describe(tasks) + (f" — waiting: {why}" if why else "")
                        bar.update(progress_id, completed=done, description=shown)
                    if not pending:
                        break
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        timed_out = True
                        break
                    wait_s = max(0.0, next_poll - time.monotonic())
                    try:
                        wait_s = wait_s if left is None else min(wait_s, left)
                        event = await asyncio.wait_for(queue.get(), timeout=wait_s)
                        _apply(tasks, event, stale)
                        while not queue.empty():
                            _apply(tasks, queue.get_nowait(), stale)
                    except TimeoutError:
                        pass
                    if time.monotonic() >= next_poll:
                        tasks.update(await fetch_many(client, pending, projection=_PROJECTION))
                        stale.difference_update(pending)
                        next_poll = time.monotonic() + POLL_S
                        if time.monotonic() - started >= REASON_AFTER_S:
                            why = await _why_waiting(client, tasks, pending)
                            if why and bar is None and not told and not ctx.out.json_mode:
                                warn(f"still waiting after {REASON_AFTER_S:g} s: {why}")
                                told = True
            # Events carry the state, not every detail: read what they changed once more.
            ended = [i for i in ids if i in stale and tasks[i]["state"] in FINAL]
            tasks.update(await fetch_many(client, ended, projection=_PROJECTION))
        finally:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed
    return _report(ctx, ids, tasks, timed_out=timed_out, timeout_s=timeout_s)


def _report(
    ctx: Context,
    ids: list[str],
    tasks: dict[str, TaskDoc],
    *,
    timed_out: bool,
    timeout_s: float | None,
) -> int:
    results = {i: outcome(tasks[i]) for i in ids}
    counts = {k: sum(1 for r in results.values() if r == k) for k in ("success", "failed")}
    counts["cancelled"] = sum(1 for r in results.values() if r == "cancelled")
    counts["pending"] = sum(1 for r in results.values() if r == "pending")
    if ctx.out.json_mode:
        ctx.out.json(
            {
                "tasks": [
                    {
                        "_id": i,
                        "name": tasks[i].get("name"),
                        "state": tasks[i]["state"],
                        "exit_status": (tasks[i].get("execution") or {}).get("exit_status"),
                        "exit_code": (tasks[i].get("execution") or {}).get("exit_code"),
                        "result": results[i],
                    }
                    for i in ids
                ],
                **counts,
                "timed_out": timed_out,
            }
        )
    else:
        for task_id in ids:
            if results[task_id] in ("failed", "cancelled"):
                execution = tasks[task_id].get("execution") or {}
                detail = execution.get("exit_status") or tasks[task_id]["state"]
                if execution.get("exit_code") is not None:
                    detail += f", exit code {execution['exit_code']}"
                name = tasks[task_id].get("name")
                label = f"{task_id} ({name})" if name else task_id
                shown = (
                    results[task_id]
                    if detail == results[task_id]
                    else f"{results[task_id]} ({detail})"
                )
                ctx.out.line(f"{label}: {shown}")
        summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        ctx.out.line(f"{len(ids)} task{'s' if len(ids) != 1 else ''}: {summary}")
    if timed_out:
        warn(f"timed out after {timeout_s:g} s: {counts['pending']} of {len(ids)} still pending")
        return EXIT_TIMEOUT
    return EXIT_OK if counts["success"] == len(ids) else EXIT_FAILED


async def run_wait(ctx: Context) -> int:
    texts = check_ids(ctx.args.ids)
    if not texts and not ctx.args.job:
        raise UsageError("name the tasks to wait for: banyan wait ID... or --job ID")
    async with ctx.client() as client:
        ids = await resolve_ids(client, texts)
        if ctx.args.job:
            job = await resolve_job(client, ctx.args.job)
            ids = list(dict.fromkeys([*ids, *await client.job_task_ids(job)]))
    return await wait_for_tasks(ctx, ids, timeout=ctx.args.timeout)
