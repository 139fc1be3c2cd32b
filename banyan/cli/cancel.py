"""``banyan cancel``: cancel tasks (``--tree``: and what runs after them)."""

from __future__ import annotations

import argparse
from typing import Any

from banyan.cli.context import Context, check_ids
from banyan.cli.output import warn
from banyan.client.ids import resolve_ids
from banyan.client.trees import descendants, doc_continuations, walk_tree
from banyan.errors import BanyanError, NotFound

CANCEL_EPILOG = """\
examples:
  banyan cancel 6650f0c2a1b2c3d4e5f60718
  banyan cancel --tree 6650f0c2a1b2c3d4e5f60718   # and everything after it

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
    p.add_argument("ids", nargs="+", metavar="ID")
    p.add_argument("--tree", action="store_true", help="also every running or waiting descendant")
    p.set_defaults(handler=run_cancel)


async def run_cancel(ctx: Context) -> int:
    texts = check_ids(ctx.args.ids)
    results: list[dict[str, Any]] = []
    failed = False
    async with ctx.client() as client:
        ids = await resolve_ids(client, texts)
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
                try:
                    task = await client.cancel(target)
                except NotFound:
                    raise
                except BanyanError as exc:
                    if exc.status >= 500:
                        raise
                    warn(exc.message)
                    failed = True
                    continue
                results.append({"_id": target, "state": task["state"]})
                if not ctx.out.json_mode:
                    ctx.out.line(f"{target}: {task['state']}")
    if ctx.out.json_mode:
        ctx.out.json(results)
    return 1 if failed else 0
