"""The Workers view: each worker's state, load bars for cores, memory and
GPUs coloured by threshold, how many tasks it runs, and how long since it
was last heard from (drawn from the heartbeat's timestamp once a second:
yellow past the heartbeat interval, red when lost). Below the table, the
tasks the highlighted worker runs."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Static
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

from banyan.client.format import gpu_count
from banyan.units import format_memory
from tui.state import (
    Model,
    Worker,
    bar,
    heartbeat_level,
    load_style,
    look,
    short_age,
    short_id,
    unresponsive,
)
from tui.widgets.base import View

COLUMNS = (
    ("name", "WORKER", 14),
    ("state", "STATE", 12),
    ("cores", "CORES", 11),
    ("memory", "MEMORY", 11),
    ("gpus", "GPUS", 6),
    ("running", "RUN", 3),
    ("heartbeat", "SEEN", 5),
)
STATE_STYLES = {
    "idle": "green",
    "busy": "bold yellow",
    "draining": "magenta",
    "disconnected": "yellow",
    "lost": "bold red",
    "left": "dim",
}
LEVEL_STYLES = {"ok": "", "warn": "yellow", "error": "bold red"}
BAR = 6


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return float(len(value))
    return 0.0


def _load(worker: Worker, key: str) -> tuple[float, float]:
    """(used, total) of ``key``."""
    if key == "gpus":
        total = float(gpu_count(worker.capacity.get("gpus", 0)))
    else:
        total = _number(worker.capacity.get(key, 0))
    free = _number(worker.free.get(key, total))
    return max(0.0, total - free), total


def _amount(key: str, value: float) -> str:
    if key == "memory":
        return format_memory(int(value)).replace(" ", "").replace("iB", "")
    return f"{value:g}"


def load_cell(worker: Worker, key: str, width: int = BAR) -> Text:
    used, total = _load(worker, key)
    if total <= 0:
        return Text("-", style="dim")
    fraction = used / total
    text = Text(bar(fraction, width), style=load_style(fraction))
    label = f"{fraction:.0%}" if key == "memory" else f"{_amount(key, used)}/{_amount(key, total)}"
    text.append(" " + label, style="")
    return text


class WorkersView(View):
    FOCUS = "#worker-table"
    _model: Model | None = None
    _now = 0.0

    def compose(self) -> ComposeResult:
        yield Static("", id="workers-note", classes="note")
        table: DataTable[Any] = DataTable(id="worker-table", cursor_type="row")
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        yield table
        yield Static("", id="worker-running", classes="panel")

    def _cells(self, worker: Worker, running: int, now: float, interval_s: float) -> list[Any]:
        level = heartbeat_level(worker, now, interval_s)
        age = None if worker.last_heartbeat is None else now - worker.last_heartbeat
        return [
            Text(worker.name, no_wrap=True),
            Text("unresponsive", style="bold yellow")
            if unresponsive(worker, now, interval_s)
            else Text(worker.state, style=STATE_STYLES.get(worker.state, "")),
            load_cell(worker, "cores", 4),
            load_cell(worker, "memory", BAR),
            load_cell(worker, "gpus", 2),
            Text(str(running), justify="right"),
            Text(short_age(age), style=LEVEL_STYLES[level], justify="right"),
        ]

    def redraw(self, model: Model, now: float) -> None:
        self.refresh_from(model, now, self.options.heartbeat_interval_s)

    def refresh_from(self, model: Model, now: float, interval_s: float) -> None:
        self._model, self._now = model, now
        table = self.query_one(DataTable)
        names = sorted(model.workers)
        running = model.running_by_worker()
        for key in [str(k.value) for k in table.rows if k.value not in model.workers]:
            table.remove_row(key)
        for name in names:
            worker = model.workers[name]
            count = running.get(name, 0) or len(worker.running)
            cells = self._cells(worker, count, now, interval_s)
            try:
                table.get_row_index(name)
            except RowDoesNotExist:
                table.add_row(*cells, key=name)
                continue
            for (key, _, _), cell in zip(COLUMNS, cells, strict=True):
                if table.get_cell(name, key) != cell:
                    table.update_cell(name, key, cell)
        live = sum(1 for w in model.workers.values() if w.state in ("idle", "busy", "draining"))
        note = f"{live} live of {len(names)} worker{'s' if len(names) != 1 else ''}"
        self.query_one("#workers-note", Static).update(note, layout=False)
        self._running_panel(model, now)

    def highlighted(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        try:
            return str(table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value)
        except CellDoesNotExist:
            return None

    def _running_panel(self, model: Model, now: float) -> None:
        name = self.highlighted()
        panel = self.query_one("#worker-running", Static)
        if name is None or name not in model.workers:
            panel.update("")
            return
        tasks = model.running_on(name)
        text = Text(f"{name}: ", style="bold")
        if not tasks:
            text.append("nothing running", style="dim")
        for task in tasks[:6]:
            glyph, _, style = look(task.status)
            ran = short_age(now - task.started) if task.started else "-"
            text.append(f"\n {glyph} ", style=style)
            text.append(f"{short_id(task.id)} {task.label[:40]} ({ran})")
        if len(tasks) > 6:
            text.append(f"\n … and {len(tasks) - 6} more", style="dim")
        panel.update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self._model is not None:
            self._running_panel(self._model, self._now)
