"""The Jobs view: one row per job among the loaded tasks (an array, a bulk
submit, a single task), newest first: its name, owner, counts by state and
time span (``tui.state.job_rows``). Enter shows the job's tasks in the Tasks
view, filtered by ``job:ID``."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Static
from textual.widgets.data_table import RowDoesNotExist

from tui.state import JobRow, Model, job_rows, look, short_age, short_id
from tui.widgets.base import View

COLUMNS = (
    ("job", "JOB", 24),  # whole, as the task ids: the CLI takes it as it is
    ("name", "NAME", 20),
    ("owner", "OWNER", 10),
    ("total", "TASKS", 6),
    ("waiting", "WAIT", 6),
    ("running", "RUN", 6),
    ("success", "OK", 6),
    ("failed", "FAIL", 6),
    ("cancelled", "CANC", 6),
    ("span", "SPAN", 6),
)


def _cells(row: JobRow, now: float) -> list[Any]:
    def number(value: int, status: str) -> Text:
        style = look(status)[2] if value else "dim"
        return Text(f"{value:,}", style=style, justify="right")

    counts = row.counts
    span = row.span_s(now)
    return [
        Text(short_id(row.id), style="dim", no_wrap=True),
        Text(row.name, no_wrap=True),
        Text(row.owner, no_wrap=True),
        Text(f"{row.total:,}", justify="right"),
        number(counts.get("inactive", 0) + counts.get("available", 0), "available"),
        number(counts.get("running", 0) + counts.get("cancelling", 0), "running"),
        number(counts.get("success", 0), "success"),
        number(counts.get("failed", 0), "failed"),
        number(counts.get("cancelled", 0), "cancelled"),
        Text(short_age(span) if span is not None else "-", justify="right"),
    ]


class JobsView(View):
    FOCUS = "#job-table"

    def compose(self) -> ComposeResult:
        yield Static("", id="jobs-note", classes="note")
        table: DataTable[Any] = DataTable(id="job-table", cursor_type="row")
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        yield table

    def redraw(self, model: Model, now: float) -> None:
        table = self.query_one(DataTable)
        rows = job_rows(model.tasks.values(), model.job_names)
        wanted = {row.id for row in rows}
        for key in [str(k.value) for k in table.rows if k.value not in wanted]:
            table.remove_row(key)
        for row in rows:
            cells = _cells(row, now)
            try:
                table.get_row_index(row.id)
            except RowDoesNotExist:
                table.add_row(*cells, key=row.id)
                continue
            for (key, _, _), cell in zip(COLUMNS, cells, strict=True):
                if table.get_cell(row.id, key) != cell:
                    table.update_cell(row.id, key, cell)
        note = f"{len(rows):,} job{'s' if len(rows) != 1 else ''} among the loaded tasks"
        self.query_one("#jobs-note", Static).update(note, layout=False)

    def cursor_task_id(self) -> str | None:
        # A job's id is its first task's: c, C and r act on that task.
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return str(key.value) if key.value is not None else None
