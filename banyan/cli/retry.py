"""``banyan retry``: make failed, cancelled or held tasks available again."""

from __future__ import annotations

import argparse
from typing import Any

from banyan.cli.context import Context, check_ids
from banyan.client.ids import resolve_ids

RETRY_EPILOG = """\
examples:
  banyan retry 6650f0c2a1b2c3d4e5f60718

A task that failed or was cancelled becomes available again (retry count
reset), and the continuations cancelled because of it wait for it again.
A task that succeeded cannot be retried (submit a new one). A held task
('submit --hold') is released the same way.
"""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "retry",
        parents=parents,
        help="run a failed or cancelled task again (or release a held one)",
        description="Make failed, cancelled or held tasks available again.",
        epilog=RETRY_EPILOG,
        formatter_class=raw,
    )
    p.add_argument("ids", nargs="+", metavar="ID")
    p.set_defaults(handler=run_retry)


async def run_retry(ctx: Context) -> int:
    texts = check_ids(ctx.args.ids)
    results: list[dict[str, Any]] = []
    async with ctx.client() as client:
        ids = await resolve_ids(client, texts)
        for task_id in ids:
            task = await client.update(task_id, {"state": "available"})
            results.append({"_id": task_id, "state": task["state"]})
            if not ctx.out.json_mode:
                ctx.out.line(f"{task_id}: {task['state']}")
    if ctx.out.json_mode:
        ctx.out.json(results)
    return 0
