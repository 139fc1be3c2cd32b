"""``banyan show``: one task's fields, its current execution and every attempt."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from banyan.cli.context import Context, check_ids
from banyan.cli.output import key_value_table, state_text
from banyan.client.format import (
    between,
    duration,
    memory,
    resources,
)
from banyan.client.ids import resolve_id

if TYPE_CHECKING:
    from rich.table import Table

SHOW_EPILOG = """\
examples:
  banyan show 6650f0c2a1b2c3d4e5f60718
  banyan show 6650f0c2a1b2c3d4e5f60718 --json
"""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
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


async def run_show(ctx: Context) -> int:
    from rich.text import Text

    (text,) = check_ids([ctx.args.id])
    async with ctx.client() as client:
        task_id = await resolve_id(client, text)
        task = await client.task(task_id)
        history = await client.history(task_id)
        workers = await client.workers() if task.get("state") in ACTIVE else []
        parents = await client.find(
            {"continuations": task_id}, projection={"name": 1, "state": 1}, max_results=100
        )
        # Why it is not running (whatever the code: the server's message is shown).
        reason = None if task.get("state") == "running" else await client.pending_reason(task_id)
    if ctx.out.json_mode:
        ctx.out.json(
            {
                "task": task,
                "history": history,
                "parents": parents["_items"],
                "pending_reason": reason,
            }
        )
        return 0
    execution = task.get("execution") or {}
    rows: list[tuple[str, Any]] = [
        ("id", task["_id"]),
        ("name", task.get("name") or "-"),
        ("state", state_text(task.get("state"), execution.get("exit_status"))),
        *([("reason", Text(str(reason.get("reason", "")), style="yellow"))] if reason else []),
        ("command", task.get("command") or "(group task)"),
        ("queue", f"{task.get('queue')}   priority {task.get('priority', 0)}"),
        ("resources", resources(task.get("requested_resources"))),
        ("retries", f"{task.get('retry_count', 0)} of {task.get('max_retry_count', 0)}"),
        ("termination", "grace " + duration(task.get("max_termination_time"))),
        *_time_and_abandon_rows(task),
    ]
    if task.get("estimated_runtime") is not None:
        rows.append(("estimated", duration(task["estimated_runtime"])))
    if task.get("cwd"):
        rows.append(("cwd", task["cwd"]))
    if env := task.get("env"):
        rows.append(("env", " ".join(f"{k}={v}" for k, v in sorted(env.items()))))
    if parents["_items"]:
        rows.append((_AFTER[task.get("run_when") or "success"], _labels(parents["_items"])))
    if task.get("pending_dependency_count"):
        rows.append(("waiting on", f"{task['pending_dependency_count']} parent(s)"))
    if task.get("continuations"):
        rows.append(("continuations", ", ".join(task["continuations"])))
    if task.get("job") and task["job"] != task["_id"]:
        rows.append(("job", task["job"]))
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
            ("worker", _worker_text(execution.get("worker"), workers)),
            ("started", execution.get("time_started") or "-"),
            ("ended", execution.get("time_terminated") or "-"),
        ]
        if exit_status := execution.get("exit_status"):
            code = execution.get("exit_code")
            extra = f" (exit code {code})" if code not in (None, 0) else ""
            exec_rows.append(("exit status", exit_status + extra))
        if progress:
            percent = progress.get("percent")
            text = f"{percent:g}%" if isinstance(percent, int | float) else ""
            exec_rows.append(("progress", f"{text} {progress.get('message') or ''}".strip()))
        ctx.out.show(Text(""), key_value_table(exec_rows, title="[bold]Execution[/bold]"))
    if history:
        ctx.out.show(Text(""), _history_table(history))
    return 0


ACTIVE = ("running", "pending_cancellation")


def _time_and_abandon_rows(task: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The wall-time limit, the begin time and the crash budget (issue 13)."""
    rows: list[tuple[str, Any]] = []
    if task.get("time_limit") is not None:
        rows.append(("time limit", duration(task["time_limit"])))
    if task.get("not_before"):
        rows.append(("not before", task["not_before"]))
    rows.append(
        (
            "abandons",
            f"{task.get('abandon_count', 0)} of {task.get('max_abandon_count', 0)} "
            "(reruns after its worker died)",
        )
    )
    return rows


def _worker_text(name: str | None, workers: Sequence[Mapping[str, Any]]) -> str:
    """The worker's name; while it runs the task, whether it has gone quiet."""
    if name is None:
        return "-"
    for worker in workers:
        if worker.get("name") == name and worker.get("responsive") is False:
            age = worker.get("last_heartbeat_age_s") or 0
            return f"{name} (unresponsive: not heard from for {age:.0f} s)"
    return name


# How each run_when reads in front of the parents' list.
_AFTER = {
    "success": "after (success)",
    "finished": "after (any end)",
    "failure": "after (a failure)",
}


def _labels(parents: list[dict[str, Any]]) -> str:
    return ", ".join(_label(p) for p in parents)


def _label(task: dict[str, Any]) -> str:
    name = task.get("name")
    return f"{task['_id']} ({name}, {task.get('state')})" if name else f"{task['_id']}"


def _history_table(history: list[dict[str, Any]]) -> Table:
    from rich.table import Table
    from rich.text import Text

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
