"""The Detail view of one task: its fields, progress, an RSS sparkline (from
the stored samples, then ``task.usage`` events), its attempts with their exit
statuses, and the tail of its log (refreshed by the app while it runs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Log, ProgressBar, Sparkline, Static

from banyan.client.format import between, duration, memory, resources
from banyan.documents import TaskDoc
from banyan.units import format_memory
from tui.state import (
    ACTIVE_STATES,
    Model,
    Task,
    clock_text,
    look,
    parse_time,
    run_time,
    short_age,
    unresponsive,
)
from tui.widgets.base import Navigator, View, ViewOptions

LOG_LINES = 200


# A task that does not wait for its parents' success says when it runs (run_when).
RUNS_WHEN = {
    "finished": "after its parents end, whatever the outcome",
    "failure": "only if a parent failed",
}


def fields_table(
    task: Task, doc: Mapping[str, Any] | None, now: float, *, worker_quiet: bool = False
) -> Table:
    """``worker_quiet``: the worker running it has not been heard from for two
    heartbeats (unresponsive, not lost yet)."""
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    glyph, label, style = look(task.status)
    status = Text(f"{glyph} {label}", style=style)
    doc = doc or {}
    code = (doc.get("execution") or {}).get("exit_code", task.exit_code)
    if task.status == "failed" and task.exit_status == "failure" and code is not None:
        status.append(f" (exit code {code})")
    elif task.exit_status and task.status in ("failed", "cancelled"):
        status.append(f" ({task.exit_status})")  # e.g. "skipped (no parent failed)"
    rows: list[tuple[str, Any]] = [
        ("id", task.id),
        ("name", task.name or "-"),
        ("command", doc.get("command") or task.command or "(group)"),
        ("state", status),
        *_reason_row(task, doc),
        ("queue", f"{task.queue}   priority {task.priority}"),
        ("retries", f"{task.retry_count} of {task.max_retry_count}"),
        *time_and_abandon_rows(doc),
        ("resources", resources(doc.get("requested_resources") or task.resources)),
        ("created", f"{short_age(now - task.created)} ago"),
    ]
    if (run_when := doc.get("run_when")) in RUNS_WHEN:
        rows.append(("runs", RUNS_WHEN[run_when]))
    if task.worker:
        ran = run_time(task, now)
        verb = "running for" if task.state in ACTIVE_STATES else "ran"
        ran_text = clock_text(ran) if ran is not None else "-"
        rows.append(("attempt", f"{task.attempt} on {task.worker}, {verb} {ran_text}"))
        if worker_quiet and not task.final:
            rows.append(("worker", Text(f"{task.worker} is unresponsive", style="bold yellow")))
    if task.message:
        rows.append(("message", task.message))
    for key, value in rows:
        table.add_row(key, value)
    return table


def time_and_abandon_rows(doc: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Wall-time limit, begin time and the crash budget (issue 13), when loaded."""
    rows: list[tuple[str, Any]] = []
    if doc.get("time_limit") is not None:
        rows.append(("time limit", duration(doc["time_limit"])))
    if doc.get("not_before"):
        rows.append(("not before", str(doc["not_before"])))
    if "abandon_count" in doc:
        rows.append(("abandons", f"{doc['abandon_count']} of {doc.get('max_abandon_count', 0)}"))
    return rows


def _reason_row(task: Task, doc: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Why a task that is not running is not (the server's message as it is)."""
    if task.state == "running":
        return []
    found = doc.get("_pending_reason") or {}
    reason = found.get("reason") or (
        task.reason if task.state in ("inactive", "available") else None
    )
    return [("reason", Text(str(reason), style="yellow"))] if reason else []


def history_table(history: Sequence[Mapping[str, Any]]) -> Table | Text:
    if not history:
        return Text("no attempts yet", style="dim")
    table = Table(box=None, pad_edge=False, header_style="bold", expand=False)
    for header in ("#", "WORKER", "RAN", "EXIT", "PEAK RSS"):
        table.add_column(header, no_wrap=True)
    for attempt in history[-6:]:
        usage = attempt.get("usage") or {}
        status = attempt.get("exit_status") or "running"
        if attempt.get("exit_code") not in (None, 0):
            status += f" ({attempt['exit_code']})"
        colour = "green" if status == "success" else "yellow" if status == "running" else "red"
        table.add_row(
            str(attempt.get("attempt", "")),
            str(attempt.get("worker") or "-"),
            duration(between(attempt.get("time_started"), attempt.get("time_terminated"))),
            Text(status, style=colour),
            memory(usage.get("peak_rss_bytes")),
        )
    return table


class DetailView(View):
    FOCUS = "#detail-log"

    def __init__(self, options: ViewOptions, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.task_id: str | None = None
        self.doc: TaskDoc | None = None
        self.history: list[dict[str, Any]] = []
        self.stored_usage: list[tuple[float, int]] = []
        self.log_text = ""

    def compose(self) -> ComposeResult:
        yield Static("press enter on a task to see it here", id="detail-fields")
        yield ProgressBar(total=100, show_eta=False, id="detail-progress")
        yield Static("", id="detail-rss-label", classes="note")
        yield Sparkline([], id="detail-rss")
        yield Static("", id="detail-history")
        yield Static("log (tail, refreshed while it runs)", classes="note")
        yield Log(id="detail-log", max_lines=LOG_LINES * 5, auto_scroll=True)

    def open(self, task_id: str) -> None:
        if task_id != self.task_id:
            self.task_id = task_id
            self.doc, self.history, self.stored_usage = None, [], []
            self.log_text = ""
            self.query_one(Log).clear()

    def set_loaded(
        self,
        doc: TaskDoc | None,
        history: list[dict[str, Any]],
        usage: list[dict[str, Any]],
    ) -> None:
        self.doc, self.history = doc, history
        points = []
        for sample in usage:
            when = parse_time(sample.get("time"))
            rss = sample.get("resident_memory_bytes")
            if when is not None and isinstance(rss, int):
                points.append((when, rss))
        self.stored_usage = points

    def set_logs(self, logs: Mapping[str, Any]) -> None:
        text = str(logs.get("stdout") or "")
        if logs.get("stderr"):
            text += "".join(f"[err] {line}\n" for line in str(logs["stderr"]).splitlines())
        if text == self.log_text:
            return
        log = self.query_one(Log)
        if self.log_text and text.startswith(self.log_text):
            log.write(text[len(self.log_text) :])
        else:
            log.clear()
            log.write(text)
        self.log_text = text

    def redraw(self, model: Model, now: float) -> None:
        if self.task_id is None:
            return
        task = model.tasks.get(self.task_id)
        fields = self.query_one("#detail-fields", Static)
        if task is None:
            fields.update(Text(f"{self.task_id}: not loaded", style="dim"))
            return
        worker = model.workers.get(task.worker) if task.worker else None
        quiet = worker is not None and unresponsive(worker, now, self.options.heartbeat_interval_s)
        fields.update(fields_table(task, self.doc, now, worker_quiet=quiet))
        bar = self.query_one(ProgressBar)
        bar.display = task.percent is not None
        if task.percent is not None:
            bar.update(progress=task.percent)
        live = list(model.usage.get(task.id, ()))
        first_live = live[0][0] if live else None
        points = [p for p in self.stored_usage if first_live is None or p[0] < first_live] + live
        rss = [float(r) for _, r in points]
        label = self.query_one("#detail-rss-label", Static)
        spark = self.query_one(Sparkline)
        spark.display = bool(rss)
        if rss:
            peak = format_memory(int(max(rss)))
            label.update(f"RSS now {format_memory(int(rss[-1]))}, peak {peak} ({len(rss)} samples)")
            spark.data = rss[-120:]
        else:
            label.update("RSS: no samples yet")
        self.query_one("#detail-history", Static).update(history_table(self.history))

    def set_error(self, message: str) -> None:
        self.query_one("#detail-fields", Static).update(Text(message, style="red"))

    def entered(self, app: Navigator, focus_id: str | None) -> None:
        if focus_id is not None and focus_id != self.task_id:
            app.open_detail(focus_id)

    def cursor_task_id(self) -> str | None:
        return self.task_id
