"""``banyan cancel``: cancel tasks (``--tree``: and what runs after them)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from banyan.cli.context import Context, UsageError, check_ids
from banyan.cli.output import warn
from banyan.client.ids import resolve_ids, resolve_job
from banyan.client.trees import descendants, doc_continuations, walk_tree
from banyan.errors import BanyanError, NotFound

if TYPE_CHECKING:  # the CLI starts without the client's imports (asyncio)
    from banyan.client.http import Client

CANCEL_EPILOG = """\
examples:
  banyan cancel 6650f0c2a1b2c3d4e5f60718
  banyan cancel --tree 6650f0c2a1b2c3d4e5f60718   # and everything after it
  banyan cancel --job 6650f0c2a1b2c3d4e5f60718    # every task of the job

A running task is asked to stop (pending_cancellation: its worker sends
SIGTERM, then SIGKILL after max_termination_time); a waiting one is
cancelled at once, and the continuations that wait for it with it.
"""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "cancel",
        parents=parents,
        help="cancel tasks",
        description="Cancel tasks (a running task is asked to stop).",
        epilog=CANCEL_EPILOG,
        formatter_class=raw,
    )
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--tree", action="store_true", help="also every running or waiting descendant")
    p.add_argument("--job", metavar="ID", help="every task of this job that still waits or runs")
    p.set_defaults(handler=run_cancel)


async def _job_targets(client: Client, job: str) -> list[str]:
    """The tasks of ``job`` that still wait or run (``NotFound`` for no such job)."""
    await client.job(job)
    found = await client.find_all(
        {"job": job, "state": {"$nin": ["terminated", "cancelled"]}}, sort="_id"
    )
    # The waiting ones first: a core freed by stopping a running task must not
    # start a task of the same job on the way.
    running = ("running", "pending_cancellation")
    return [t["_id"] for t in found if t["state"] not in running] + [
        t["_id"] for t in found if t["state"] in running
    ]


async def run_cancel(ctx: Context) -> int:
    texts = check_ids(ctx.args.ids)
    if not texts and not ctx.args.job:
        raise UsageError("name the tasks to cancel: banyan cancel ID... or --job ID")
    results: list[dict[str, Any]] = []
    failed = False
    async with ctx.client() as client:
        ids = await resolve_ids(client, texts)
        if ctx.args.job:
            job = await resolve_job(client, ctx.args.job)
            # A task a parent's cascade already cancelled is a no-op success.
            for target in await _job_targets(client, job):
                failed |= not await _cancel_one(ctx, client, target, results)
        for task_id in ids:
            targets = [task_id]
            if ctx.args.tree:
                tasks = await walk_tree(client, await client.task(task_id))
                targets += descendants(tasks, task_id, doc_continuations)
                # Ended tasks stay as they are; only what still waits or runs is cancelled.
                targets = [
                    t for t in targets if tasks[t]["state"] not in ("terminated", "cancelled")
                ]
            for target in targets:
                failed |= not await _cancel_one(ctx, client, target, results)
    if ctx.out.json_mode:
        ctx.out.json(results)
    return 1 if failed else 0


async def _cancel_one(
    ctx: Context, client: Client, target: str, results: list[dict[str, Any]]
) -> bool:
    """Cancel one task, reporting it; False when the server refused."""
    try:
        task = await client.cancel(target)
    except NotFound:
        raise
    except BanyanError as exc:
        if exc.status >= 500:
            raise
        warn(exc.message)
        return False
    results.append({"_id": target, "state": task["state"]})
    if not ctx.out.json_mode:
        ctx.out.line(f"{target}: {task['state']}")
    return True
