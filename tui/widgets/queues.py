"""The Queues view: per queue, how many tasks wait, are available, run and
ended, how many finished in the last minute (from the feed; the header's
"finished" figures are the same count over every queue), and how long
the oldest available task has waited (``/stats``, else the loaded tasks)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Static
from textual.widgets.data_table import RowDoesNotExist

from tui.state import Model, QueueRow, finished_note, look, queue_rows, short_age
from tui.widgets.base import RowTable, View

COLUMNS = (
    ("queue", "QUEUE", 14),
    ("waiting", "WAIT", 6),
    ("available", "AVAIL", 6),
    ("running", "RUN", 6),
    ("terminated", "ENDED", 7),
    ("cancelled", "CANC", 6),
    ("done_1m", "DONE/1m", 7),
    ("oldest", "OLDEST", 6),
)
STYLES = {
    "available": look("available")[2],
    "running": look("running")[2],
    "cancelled": look("cancelled")[2],
    "terminated": look("success")[2],
}


def _cells(row: QueueRow) -> list[Any]:
    def number(key: str, value: int) -> Text:
        return Text(f"{value:,}", style=STYLES.get(key, "") if value else "dim", justify="right")

    oldest = short_age(row.oldest_waiting_s) if row.oldest_waiting_s is not None else "-"
    return [
        Text(row.name, no_wrap=True),
        number("waiting", row.waiting),
        number("available", row.available),
        number("running", row.running),
        number("terminated", row.terminated),
        number("cancelled", row.cancelled),
        Text(f"{row.done_1m:,}", justify="right"),
        Text(oldest, justify="right"),
    ]


class QueuesView(View):
    FOCUS = "#queue-table"

    def compose(self) -> ComposeResult:
        yield Static("", id="queues-note", classes="note")
        table = RowTable(id="queue-table")
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        yield table

    def redraw(self, model: Model, now: float) -> None:
        self.refresh_from(model, now)

    def refresh_from(self, model: Model, now: float) -> None:
        table = self.query_one(DataTable)
        rows = queue_rows(model, now)
        wanted = {row.name for row in rows}
        for key in [str(k.value) for k in table.rows if k.value not in wanted]:
            table.remove_row(key)
        for row in rows:
            cells = _cells(row)
            try:
                table.get_row_index(row.name)
            except RowDoesNotExist:
                table.add_row(*cells, key=row.name)
                continue
            for (key, _, _), cell in zip(COLUMNS, cells, strict=True):
                if table.get_cell(row.name, key) != cell:
                    table.update_cell(row.name, key, cell)
        self.query_one("#queues-note", Static).update(_note(model, rows, now), layout=False)


def _note(model: Model, rows: list[QueueRow], now: float) -> str:
    parts = [f"{len(rows)} queue{'s' if len(rows) != 1 else ''}"]
    parts.append(finished_note(model, now))
    if not model.counts_from_server:
        parts.append(f"counted from the {len(model.tasks):,} loaded tasks (no /stats)")
    return " · ".join(parts)
