"""``banyan logs``: a task's captured output (``-f`` follows it until the task ends)."""

from __future__ import annotations

import argparse
from typing import Any

from banyan.cli.context import Context, UsageError, check_ids
from banyan.cli.output import warn
from banyan.cli.wait import FINAL
from banyan.client.ids import resolve_id

LOG_POLL_S = 0.5


LOGS_EPILOG = """\
examples:
  banyan logs 6650f0c2a1b2c3d4e5f60718            # stdout of the current attempt
  banyan logs 6650f0c2a1b2c3d4e5f60718 --stderr --tail 20
  banyan logs -f 6650f0c2a1b2c3d4e5f60718         # follow until the task ends
"""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "logs",
        parents=parents,
        help="print a task's output",
        description="Print the captured stdout (or stderr) of a task's current attempt.",
        epilog=LOGS_EPILOG,
        formatter_class=raw,
    )
    p.add_argument("id", metavar="ID")
    p.add_argument("-f", "--follow", action="store_true", help="follow until the task ends")
    p.add_argument("--stderr", action="store_true", help="stderr instead of stdout")
    p.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    p.set_defaults(handler=run_logs)


def _tail_start(text: str, lines: int) -> int:
    """Where the last ``lines`` lines of ``text`` begin."""
    if lines <= 0:
        return len(text)
    kept = text.splitlines(keepends=True)[-lines:]
    return len(text) - sum(len(line) for line in kept)


async def run_logs(ctx: Context) -> int:
    import asyncio

    args = ctx.args
    (text,) = check_ids([args.id])
    stream = "stderr" if args.stderr else "stdout"
    if args.tail is not None and args.tail < 0:
        raise UsageError("--tail must be 0 or more")
    out = ctx.out
    async with ctx.client() as client:
        task_id = await resolve_id(client, text)
        if not args.follow:
            logs = await client.logs(task_id, stream=stream, tail=args.tail)
            if out.json_mode:
                out.json(logs)
            else:
                out.file.write(logs.get(stream) or "")
                out.file.flush()
            return 0
        shown_attempt: Any = None
        offset = 0
        first = True
        while True:
            # The state is read before the logs: once it is final, the logs
            # read after it are complete (a worker sends output before its report).
            state = (await client.task(task_id))["state"]
            logs = await client.logs(task_id, stream=stream)
            text = logs.get(stream) or ""
            if logs.get("attempt") != shown_attempt:
                if shown_attempt is not None:
                    warn(f"task {task_id}: attempt {logs.get('attempt')} started")
                shown_attempt, offset = logs.get("attempt"), 0
            if first and args.tail is not None:
                offset = _tail_start(text, args.tail)
            first = False
            offset = min(offset, len(text))
            if len(text) > offset:
                if out.json_mode:
                    out.json_line(
                        {"attempt": shown_attempt, "stream": stream, "data": text[offset:]}
                    )
                else:
                    out.file.write(text[offset:])
                    out.file.flush()
                offset = len(text)
            if state in FINAL:
                return 0
            await asyncio.sleep(LOG_POLL_S)
