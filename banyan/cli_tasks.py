"""Commands about tasks: ``banyan ls``, ``show``, ``tree``, ``cancel`` and ``retry``."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from banyan.cli_common import Context, UsageError, check_ids, descendants, parse_where, walk_tree
from banyan.cli_output import (
    age_s,
    between,
    duration,
    key_value_table,
    memory,
    outcome,
    resources,
    short_duration,
    state_text,
    warn,
)
from banyan.errors import BanyanError, NotFound
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
# Above this many tasks a tree shows the summary of its root only (each costs a walk).
MAX_SUMMARIZED = 2000

LS_EPILOG = """\
examples:
  banyan ls                                # what is waiting or running
  banyan ls --all --limit 20               # everything, the newest 20
  banyan ls --state running --queue gpu
  banyan ls --state terminated --where '{"execution.exit_status": "failure"}'
  banyan ls --json | jq '.[]._id'
"""
SHOW_EPILOG = """\
examples:
  banyan show 6650f0c2a1b2c3d4e5f60718
  banyan show 6650f0c2a1b2c3d4e5f60718 --json
"""
TREE_EPILOG = """\
examples:
  banyan tree 6650f0c2a1b2c3d4e5f60718     # the task and what runs after it

Each task with continuations shows a summary of its subtree (itself
included), e.g. "3/5 done, 1 failed". A task with several parents is shown
under each of them.
"""
CANCEL_EPILOG = """\
examples:
  banyan cancel 6650f0c2a1b2c3d4e5f60718
  banyan cancel --tree 6650f0c2a1b2c3d4e5f60718   # and everything after it

A running task is asked to stop (pending_cancellation: its worker sends
SIGTERM, then SIGKILL after max_termination_time); a waiting one is
cancelled at once, and the continuations that wait for it with it.
"""
RETRY_EPILOG = """\
examples:
  banyan retry 6650f0c2a1b2c3d4e5f60718

A task that failed or was cancelled becomes available again (retry count
reset), and the continuations cancelled because of it wait for it again.
A task that succeeded cannot be retried (submit a new one). A held task
('submit --hold') is released the same way.
"""


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
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
    p.add_argument("--where", metavar="JSON", help="a Mongo-style query, e.g. '{\"priority\": 5}'")
    p.add_argument("--all", action="store_true", help="include terminated and cancelled tasks")
    p.add_argument("--limit", type=int, default=100, metavar="N", help="the newest N (default 100)")
    p.set_defaults(handler=run_ls)

    p = sub.add_parser(
        "show",
        parents=parents,
        help="show one task: fields, execution, attempts",
        description="Show a task: its fields, its current execution and every attempt.",
        epilog=SHOW_EPILOG,
        formatter_class=raw,
    )
    p.add_argument("id", metavar="ID")
    p.set_defaults(handler=run_show)

    p = sub.add_parser(
        "tree",
        parents=parents,
        help="show a task's continuation tree",
        description="Show a task and its continuations, recursively, with their states.",
        epilog=TREE_EPILOG,
        formatter_class=raw,
    )
    p.add_argument("id", metavar="ID")
    p.set_defaults(handler=run_tree)

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


# --- ls --------------------------------------------------------------------------


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
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


async def run_ls(ctx: Context) -> int:
    args = ctx.args
    if args.limit < 1:
        raise UsageError("--limit must be 1 or more")
    where = ls_query(args)
    items: list[dict[str, Any]] = []
    total = 0
    async with ctx.client() as client:
        page = 1
        while len(items) < args.limit:
            found = await client.find(
                where,
                sort="-_id",
                projection=LS_PROJECTION,
                max_results=min(PAGE, args.limit - len(items)),
                page=page,
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
    for header in ("ID", "NAME", "STATE", "QUEUE", "PRI", "WORKER", "EXIT", "AGE"):
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
        )
    ctx.out.show(table)
    shown = f"{len(items)} of {total} task{'s' if total != 1 else ''}"
    hint = "" if args.all or args.state else " (terminated and cancelled hidden; --all shows them)"
    ctx.out.show(Text(shown + hint, style="dim"))
    return 0


# --- show ------------------------------------------------------------------------


async def run_show(ctx: Context) -> int:
    (task_id,) = check_ids([ctx.args.id])
    async with ctx.client() as client:
        task = await client.task(task_id)
        history = await client.history(task_id)
        parents = await client.find(
            {"continuations": task_id}, projection={"name": 1, "state": 1}, max_results=100
        )
    if ctx.out.json_mode:
        ctx.out.json({"task": task, "history": history, "parents": parents["_items"]})
        return 0
    execution = task.get("execution") or {}
    rows: list[tuple[str, Any]] = [
        ("id", task["_id"]),
        ("name", task.get("name") or "-"),
        ("state", state_text(task.get("state"), execution.get("exit_status"))),
        ("command", task.get("command") or "(group task)"),
        ("queue", f"{task.get('queue')}   priority {task.get('priority', 0)}"),
        ("resources", resources(task.get("requested_resources"))),
        ("retries", f"{task.get('retry_count', 0)} of {task.get('max_retry_count', 0)}"),
        ("termination", "grace " + duration(task.get("max_termination_time"))),
    ]
    if task.get("estimated_runtime") is not None:
        rows.append(("estimated", duration(task["estimated_runtime"])))
    if task.get("cwd"):
        rows.append(("cwd", task["cwd"]))
    if task.get("env"):
        rows.append(("env", " ".join(f"{k}={v}" for k, v in sorted(task["env"].items()))))
    if parents["_items"]:
        rows.append(("after", ", ".join(_label(p) for p in parents["_items"])))
    if task.get("pending_dependency_count"):
        rows.append(("waiting on", f"{task['pending_dependency_count']} parent(s)"))
    if task.get("continuations"):
        rows.append(("continuations", ", ".join(task["continuations"])))
    rows += [
        ("owner", task.get("owner") or "-"),
        ("created", task.get("_created") or "-"),
        ("updated", task.get("_updated") or "-"),
    ]
    ctx.out.show(key_value_table(rows, title="[bold]Task[/bold]"))
    if execution:
        progress = execution.get("progress") or {}
        exec_rows: list[tuple[str, Any]] = [
            ("attempt", str(execution.get("attempt", "-"))),
            ("worker", execution.get("worker") or "-"),
            ("started", execution.get("time_started") or "-"),
            ("ended", execution.get("time_terminated") or "-"),
        ]
        if execution.get("exit_status"):
            code = execution.get("exit_code")
            extra = f" (exit code {code})" if code not in (None, 0) else ""
            exec_rows.append(("exit status", execution["exit_status"] + extra))
        if progress:
            percent = progress.get("percent")
            text = f"{percent:g}%" if isinstance(percent, int | float) else ""
            exec_rows.append(("progress", f"{text} {progress.get('message') or ''}".strip()))
        ctx.out.show(Text(""), key_value_table(exec_rows, title="[bold]Execution[/bold]"))
    if history:
        ctx.out.show(Text(""), _history_table(history))
    return 0


def _label(task: dict[str, Any]) -> str:
    name = task.get("name")
    return f"{task['_id']} ({name}, {task.get('state')})" if name else f"{task['_id']}"


def _history_table(history: list[dict[str, Any]]) -> Table:
    table = Table(title="[bold]Attempts[/bold]", title_justify="left", box=None, pad_edge=False)
    for header in ("#", "WORKER", "STARTED", "RAN", "EXIT", "PEAK RSS", "CPU"):
        table.add_column(header, header_style="bold")
    for attempt in history:
        usage = attempt.get("usage") or {}
        cpu = None
        if "cpu_user_s" in usage or "cpu_system_s" in usage:
            cpu = float(usage.get("cpu_user_s") or 0) + float(usage.get("cpu_system_s") or 0)
        status = attempt.get("exit_status") or "running"
        if attempt.get("exit_code") not in (None, 0):
            status += f" ({attempt['exit_code']})"
        table.add_row(
            str(attempt.get("attempt", "")),
            attempt.get("worker") or "-",
            attempt.get("time_started") or "-",
            duration(between(attempt.get("time_started"), attempt.get("time_terminated"))),
            Text(status, style="green" if status == "success" else ""),
            memory(usage.get("peak_rss_bytes")),
            duration(cpu),
        )
    return table


# --- tree ------------------------------------------------------------------------


def subtree_summary(tasks: dict[str, dict[str, Any]], root_id: str) -> str:
    """``"3/5 done, 1 failed"`` over ``root_id`` and everything after it."""
    ids = [root_id, *descendants(tasks, root_id)]
    results = [outcome(tasks[i]) for i in ids]
    running = sum(1 for i in ids if tasks[i].get("state") in ("running", "pending_cancellation"))
    parts = [f"{results.count('success')}/{len(ids)} done"]
    for label, count in (
        ("failed", results.count("failed")),
        ("cancelled", results.count("cancelled")),
        ("running", running),
    ):
        if count:
            parts.append(f"{count} {label}")
    return ", ".join(parts)


def _node_label(tasks: dict[str, dict[str, Any]], task_id: str, *, summary: bool) -> Text:
    task = tasks[task_id]
    execution = task.get("execution") or {}
    label = Text(task_id, style="bold")
    if task.get("name"):
        label.append(f" {task['name']}")
    label.append("  ")
    label.append_text(state_text(task.get("state"), execution.get("exit_status")))
    if summary and task.get("continuations"):
        label.append(f"  [{subtree_summary(tasks, task_id)}]", style="dim")
    return label


def build_tree(tasks: dict[str, dict[str, Any]], root_id: str) -> Tree:
    """The rich tree under ``root_id``; a task already shown (several parents)
    appears again without its subtree."""
    summaries = len(tasks) <= MAX_SUMMARIZED
    tree = Tree(_node_label(tasks, root_id, summary=True))
    expanded = {root_id}
    # Depth first, in the order the tree is drawn, so "shown above" is true.
    stack = [(tree, iter(tasks[root_id].get("continuations") or []))]
    while stack:
        node, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
        elif child not in tasks:
            continue  # beyond the walk's bound
        elif child in expanded:
            node.add(Text(f"{child} (shown above)", style="dim"))
        else:
            expanded.add(child)
            branch = node.add(_node_label(tasks, child, summary=summaries))
            stack.append((branch, iter(tasks[child].get("continuations") or [])))
    return tree


async def run_tree(ctx: Context) -> int:
    (task_id,) = check_ids([ctx.args.id])
    async with ctx.client() as client:
        tasks = await walk_tree(client, await client.task(task_id))
    if ctx.out.json_mode:
        ctx.out.json(
            {
                "root": task_id,
                "summary": subtree_summary(tasks, task_id),
                "tasks": list(tasks.values()),
            }
        )
    else:
        ctx.out.show(build_tree(tasks, task_id))
    return 0


# --- cancel / retry --------------------------------------------------------------


async def run_cancel(ctx: Context) -> int:
    ids = check_ids(ctx.args.ids)
    results: list[dict[str, Any]] = []
    failed = False
    async with ctx.client() as client:
        for task_id in ids:
            targets = [task_id]
            if ctx.args.tree:
                tasks = await walk_tree(client, await client.task(task_id))
                targets += descendants(tasks, task_id)
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


async def run_retry(ctx: Context) -> int:
    ids = check_ids(ctx.args.ids)
    results: list[dict[str, Any]] = []
    async with ctx.client() as client:
        for task_id in ids:
            task = await client.update(task_id, {"state": "available"})
            results.append({"_id": task_id, "state": task["state"]})
            if not ctx.out.json_mode:
                ctx.out.line(f"{task_id}: {task['state']}")
    if ctx.out.json_mode:
        ctx.out.json(results)
    return 0
