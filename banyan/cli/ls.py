"""``banyan ls``: list tasks, the newest N, oldest first."""

from __future__ import annotations

import argparse
from typing import Any

from banyan.cli.context import Context, UsageError, check_ids, parse_where
from banyan.cli.output import state_text
from banyan.client.format import (
    age_s,
    short_duration,
)
from banyan.client.ids import resolve_job
from banyan.states import State

HIDDEN_BY_DEFAULT = ["terminated", "cancelled"]


LS_PROJECTION = {
    "name": 1,
    "state": 1,
    "queue": 1,
    "priority": 1,
    "execution": 1,
    "_created": 1,
    "pending_dependency_count": 1,
}


PAGE = 1000


LS_EPILOG = """\
examples:
  banyan ls                                # what is waiting or running
  banyan ls --all --limit 20               # everything, the newest 20
  banyan ls --state running --queue gpu
  banyan ls --state terminated --where '{"execution.exit_status": "failure"}'
  banyan ls --json | jq '.[]._id'
"""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "ls",
        parents=parents,
        help="list tasks",
        description="List tasks, oldest first (waiting and running ones unless --all/--state).",
        epilog=LS_EPILOG,
        formatter_class=raw,
    )
    p.add_argument(
        "--state",
        action="append",
        choices=[s.value for s in State],
        metavar="STATE",
        help="only tasks in this state (repeatable): " + ", ".join(s.value for s in State),
    )
    p.add_argument("--queue", help="only tasks of this queue")
    p.add_argument("--job", metavar="ID", help="only the tasks of this job")
    p.add_argument("--where", metavar="JSON", help="a Mongo-style query, e.g. '{\"priority\": 5}'")
    p.add_argument("--all", action="store_true", help="include terminated and cancelled tasks")
    p.add_argument("--limit", type=int, default=100, metavar="N", help="the newest N (default 100)")
    p.set_defaults(handler=run_ls)


def ls_query(args: argparse.Namespace) -> dict[str, Any]:
    clauses: list[dict[str, Any]] = []
    user = parse_where(args.where)
    if user:
        clauses.append(user)
    if args.state:
        clauses.append({"state": {"$in": list(dict.fromkeys(args.state))}})
    elif not args.all:
        clauses.append({"state": {"$nin": HIDDEN_BY_DEFAULT}})
    if args.queue:
        clauses.append({"queue": args.queue})
    if getattr(args, "job", None):
        clauses.append({"job": check_ids([args.job])[0]})
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def pending_reason_text(task: dict[str, Any]) -> str:
    """Why a waiting task waits (as squeue's REASON); empty for any other.
    Whatever the code, the server's message is shown as it is."""
    if task.get("state") not in ("inactive", "available"):
        return ""
    reason = task.get("_pending_reason") or {}
    return str(reason.get("reason") or "")


async def run_ls(ctx: Context) -> int:
    from rich.table import Table
    from rich.text import Text

    args = ctx.args
    if args.limit < 1:
        raise UsageError("--limit must be 1 or more")
    items: list[dict[str, Any]] = []
    total = 0
    async with ctx.client() as client:
        if args.job:
            args.job = await resolve_job(client, args.job)
        where = ls_query(args)
        page = 1
        while len(items) < args.limit:
            found = await client.find(
                where,
                sort="-_created,-_id",  # creation time: client-chosen ids sort anywhere
                projection=LS_PROJECTION,
                max_results=min(PAGE, args.limit - len(items)),
                page=page,
                reasons=True,
            )
            total = int(found["_meta"]["total"])
            items += found["_items"]
            if len(found["_items"]) < min(PAGE, args.limit) or len(items) >= total:
                break
            page += 1
    items.reverse()  # the newest N, shown oldest first
    if ctx.out.json_mode:
        ctx.out.json(items)
        return 0
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header in ("ID", "NAME", "STATE", "QUEUE", "PRI", "WORKER", "EXIT", "AGE", "REASON"):
        table.add_column(header, no_wrap=header in ("ID", "STATE", "AGE"))
    for task in items:
        execution = task.get("execution") or {}
        state = task.get("state")
        shown_state = state_text(state)
        if state == "inactive" and task.get("pending_dependency_count"):
            shown_state = Text(f"waiting ({task['pending_dependency_count']})", style="dim")
        exit_status = execution.get("exit_status") or ""
        if execution.get("exit_code") not in (None, 0):
            exit_status += f" ({execution['exit_code']})"
        table.add_row(
            task["_id"],
            task.get("name") or "",
            shown_state,
            task.get("queue") or "",
            str(task.get("priority", 0)),
            execution.get("worker") or "",
            Text(exit_status, style="green" if exit_status == "success" else "red"),
            short_duration(age_s(task.get("_created"))),
            Text(pending_reason_text(task), style="yellow"),
        )
    ctx.out.show(table)
    shown = f"{len(items)} of {total} task{'s' if total != 1 else ''}"
    hint = "" if args.all or args.state else " (terminated and cancelled hidden; --all shows them)"
    ctx.out.show(Text(shown + hint, style="dim"))
    return 0
