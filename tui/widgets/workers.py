"""The Workers view: each worker's state, load bars for the cores, memory and
GPUs its tasks reserved, coloured by threshold, what they really use as htop
would show it (CPU%, 100 = one core busy, and resident memory: the sums of the
latest ``task.usage`` sample of each task it runs), how many tasks it runs,
and how long since it was last heard from (drawn from the heartbeat's
timestamp once a second: yellow past the heartbeat interval, red when lost).
Below the table, the tasks the highlighted worker runs."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Static
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

from banyan.client.format import gpu_count
from tui.state import (
    Model,
    Worker,
    WorkerUse,
    bar,
    heartbeat_level,
    load_style,
    look,
    short_age,
    short_id,
    unresponsive,
)
from tui.widgets.base import RowTable, View

COLUMNS = (
    ("name", "WORKER", 10),
    ("state", "STATE", 12),
    ("cores", "CORES", 9),  # reserved
    ("memory", "MEMORY", 9),  # reserved
    ("cpu", "CPU%", 5),  # measured
    ("rss", "RSS", 6),  # measured
    ("gpus", "GPUS", 6),
    ("running", "RUN", 3),
    ("heartbeat", "SEEN", 4),
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
BAR = 4


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
        return compact_memory(int(value))
    return f"{value:g}"


def compact_memory(n_bytes: int) -> str:
    """At most 4 characters, as htop's RES column: ``"173M"``, ``"1.2G"``, ``"900K"``."""
    size = float(max(0, n_bytes))
    for unit in ("B", "K", "M", "G", "T"):
        if size < 999.5 or unit == "T":
            break
        size /= 1024
    if unit == "B":
        return f"{int(size)}B"
    shown = f"{size:.1f}".removesuffix(".0") if size < 9.95 else f"{size:.0f}"
    return shown + unit


def load_cell(worker: Worker, key: str, width: int = BAR) -> Text:
    used, total = _load(worker, key)
    if total <= 0:
        return Text("-", style="dim")
    fraction = used / total
    text = Text(bar(fraction, width), style=load_style(fraction))
    label = f"{fraction:.0%}" if key == "memory" else f"{_amount(key, used)}/{_amount(key, total)}"
    text.append(" " + label, style="")
    return text


def use_cells(worker: Worker, use: WorkerUse | None) -> tuple[Text, Text]:
    """CPU% and RSS as measured; "-" when no sample says (CPU: the server may not pass
    the worker's CPU figure on). Coloured against what the worker has."""
    cores = _number(worker.capacity.get("cores", 0))
    memory = _number(worker.capacity.get("memory", 0))
    cpu = None if use is None else use.cpu_percent
    rss = None if use is None else use.rss_bytes
    if cpu is None:
        cpu_cell = Text("-", style="dim", justify="right")
    else:
        style = load_style(cpu / (100 * cores)) if cores > 0 else ""
        cpu_cell = Text(f"{cpu:.0f}", style=style, justify="right")
    if rss is None:
        rss_cell = Text("-", style="dim", justify="right")
    else:
        style = load_style(rss / memory) if memory > 0 else ""
        rss_cell = Text(_amount("memory", rss), style=style, justify="right")
    return cpu_cell, rss_cell


class WorkersView(View):
    FOCUS = "#worker-table"
    _model: Model | None = None
    _now = 0.0

    def compose(self) -> ComposeResult:
        yield Static("", id="workers-note", classes="note")
        table = RowTable(id="worker-table")
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        yield table
        yield Static("", id="worker-running", classes="panel")

    def _cells(
        self, worker: Worker, running: int, use: WorkerUse | None, now: float, interval_s: float
    ) -> list[Any]:
        level = heartbeat_level(worker, now, interval_s)
        age = None if worker.last_heartbeat is None else now - worker.last_heartbeat
        return [
            Text(worker.name, no_wrap=True),
            Text("unresponsive", style="bold yellow")
            if unresponsive(worker, now, interval_s)
            else Text(worker.state, style=STATE_STYLES.get(worker.state, "")),
            load_cell(worker, "cores", 3),
            load_cell(worker, "memory", BAR),
            *use_cells(worker, use if running else None),
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
        used = model.worker_use()
        for key in [str(k.value) for k in table.rows if k.value not in model.workers]:
            table.remove_row(key)
        for name in names:
            worker = model.workers[name]
            count = running.get(name, 0) or len(worker.running)
            cells = self._cells(worker, count, used.get(name), now, interval_s)
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
        note += " · CORES, MEMORY: reserved · CPU%, RSS: measured"
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
