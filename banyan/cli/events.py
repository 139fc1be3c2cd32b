"""``banyan events``: the event feed as JSON lines."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from banyan.cli.context import Context, UsageError, parse_where
from banyan.cli.wait import closable

EVENTS_EPILOG = """\
examples:
  banyan events                                   # new events, until Ctrl-C
  banyan events --since 0 --count 10              # replay the first ten
  banyan events --types task.state --where '{"queue": "gpu"}'
  banyan events --types 'worker.*'

One JSON object per line: {"seq", "time", "timestamp", "type", "data"}.
"""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "events",
        parents=parents,
        help="print the event feed as JSON lines",
        description="Follow the event feed (until Ctrl-C or --count events).",
        epilog=EVENTS_EPILOG,
        formatter_class=raw,
    )
    p.add_argument("--since", type=int, metavar="SEQ", help="replay the events after this seq")
    p.add_argument("--where", metavar="JSON", help="filter on the event data, as in 'ls'")
    p.add_argument("--types", metavar="T[,T]", help="event types, e.g. task.state,worker.*")
    p.add_argument("--count", type=int, metavar="N", help="stop after N events")
    p.set_defaults(handler=run_events)


async def run_events(ctx: Context) -> int:
    args = ctx.args
    where = parse_where(args.where)
    types = [t.strip() for t in args.types.split(",") if t.strip()] if args.types else None
    if args.since is not None and args.since < 0:
        raise UsageError("--since must be 0 or more")
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be 1 or more")
    seen = 0
    async with ctx.client() as client:
        # The feed reconnects by itself; make sure the server is there at all.
        await client.request("GET", "/health")
        events = closable(client.events(since=args.since, where=where, types=types))
        async with contextlib.aclosing(events) as feed:
            async for frame in feed:
                ctx.out.json_line(frame)
                if "seq" in frame:
                    seen += 1
                    if args.count is not None and seen >= args.count:
                        break
    return 0
