"""The Tasks view: a ``DataTable`` keyed by task id, kept in step with the
model by ``RowPlan``s (``tui.state.TaskView``): rows are added, removed and
updated in place (``update_cell``, only the cells that changed), the cursor
stays on the task it was on, and ages are redrawn once a second for the rows
on screen only. A filter line (``/``) and a note ("1,000 of 100,000") sit
above and below it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual.app import ComposeResult
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Input, Static
from textual.widgets.data_table import CellDoesNotExist, CellKey, RowDoesNotExist, RowKey

from tui.messages import OpenDetail, SelectionChanged
from tui.state import (
    Model,
    RowPlan,
    Sort,
    Task,
    TaskView,
    clock_text,
    look,
    run_time,
    short_age,
    short_id,
)
from tui.widgets.base import RowTable, View, ViewOptions

FIXED = {"mark": 1, "id": 24, "state": 12, "queue": 8, "ran": 5, "age": 4}
EXTRA = {"prio": 5, "worker": 28}  # shown when the terminal is wide enough
TITLES = {"id": "ID", "name": "NAME", "state": "STATE", "queue": "QUEUE", "prio": "PRIO"}
TITLES |= {"worker": "WORKER/REASON", "ran": "RAN", "age": "AGE"}
# The column each sort key orders by, and whether the column reads the other way
# round (newest first is the youngest AGE first).
SORT_COLUMNS = {
    "created": ("age", True),
    "id": ("id", False),
    "name": ("name", False),
    "state": ("state", False),
    "queue": ("queue", False),
    "priority": ("prio", False),
}
# The worker column says, for a waiting task, why it waits (as squeue's
# NODELIST(REASON) column): the server's message, whatever its code.
WAITING = ("inactive", "available")
MIN_NAME = 10  # whole ids (24), RAN and AGE still fit 80 columns
WIDE_NAME = 40
Cells = tuple[str, ...]
# The DataTable internals ``remove_rows`` relies on (see there).
_BULK_REMOVE = all(
    hasattr(DataTable, name) for name in ("remove_row", "check_idle", "hover_coordinate")
)


class IdCell(Text):
    """The short id on screen; the whole id kept for sorting rows."""

    def __init__(self, task_id: str) -> None:
        super().__init__(short_id(task_id), style="dim", no_wrap=True)
        self.task_id = task_id


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def worker_or_reason(task: Task) -> str:
    """The worker of a task that ran, ``(why it waits)`` for a waiting one."""
    if task.state in WAITING:
        return f"({task.reason})" if task.reason else ""
    return task.worker or ""


class TaskTable(RowTable):
    """Rows are tasks; ``selected`` is the multi-selection (space)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(zebra_stripes=False, **kwargs)
        self.selected: set[str] = set()
        self.name_width = 34
        self.extras: tuple[str, ...] = ()
        self._cells: dict[str, Cells] = {}

    def layout_for(self, width: int) -> bool:
        """Choose the columns for ``width`` cells; True when they changed."""
        padding = 2 * self.cell_padding
        fixed = sum(FIXED.values()) + padding * (len(FIXED) + 1) + 2  # + name + scrollbar
        extras: tuple[str, ...] = ()
        name = width - fixed
        if name - WIDE_NAME >= sum(EXTRA.values()) + padding * len(EXTRA):
            extras = tuple(EXTRA)
            name -= sum(EXTRA.values()) + padding * len(EXTRA)
        name = max(MIN_NAME, name)
        changed = (name, extras) != (self.name_width, self.extras) or not self.columns
        self.name_width, self.extras = name, extras
        return changed

    def build_columns(self) -> None:
        self.clear(columns=True)
        self._cells.clear()
        self.add_column(" ", key="mark", width=FIXED["mark"])
        self.add_column("ID", key="id", width=FIXED["id"])
        self.add_column("NAME", key="name", width=self.name_width)
        self.add_column("STATE", key="state", width=FIXED["state"])
        self.add_column("QUEUE", key="queue", width=FIXED["queue"])
        if "prio" in self.extras:
            self.add_column("PRIO", key="prio", width=EXTRA["prio"])
        if "worker" in self.extras:
            self.add_column("WORKER/REASON", key="worker", width=EXTRA["worker"])
        # How long the attempt has run: ticks once a second for a running task, from
        # the clock alone (the rows on screen are redrawn each second, no request).
        self.add_column(Text("RAN", justify="right"), key="ran", width=FIXED["ran"])
        self.add_column(Text("AGE", justify="right"), key="age", width=FIXED["age"])
        self._marked: Sort | None = None

    def mark_sort(self, sort: Sort) -> bool:
        """Put ▲ (ascending) or ▼ on the title of the column ``sort`` orders by; False
        when no column shows that order (``updated``, or ``priority`` when narrow)."""
        column, flipped = SORT_COLUMNS.get(sort.key, ("", False))
        arrow = "▼" if sort.descending != flipped else "▲"
        if sort != self._marked:
            self._marked = sort
            for key, col in self.columns.items():
                title = TITLES.get(str(key.value))
                if title is not None:
                    text = title + arrow if key.value == column else title
                    right = key.value in ("age", "ran")
                    col.label = Text(text, justify="right" if right else "left")
            self._clear_caches()
            self.refresh()
        return column in {str(key.value) for key in self.columns}

    # --- cells ------------------------------------------------------------------

    def _values(self, task: Task, now: float) -> Cells:
        status = task.status
        glyph, label, _ = look(status)
        if status == "running" and task.percent is not None:
            label = f"{task.percent:.0f}%"
        values = [
            "●" if task.id in self.selected else " ",
            task.id,
            _fit(task.label.replace("\n", " "), self.name_width),
            f"{glyph} {label}",
            _fit(task.queue, FIXED["queue"]),
        ]
        if "prio" in self.extras:
            values.append(str(task.priority))
        if "worker" in self.extras:
            values.append(_fit(worker_or_reason(task), EXTRA["worker"]))
        values.append(clock_text(run_time(task, now)))
        values.append(short_age(now - task.created))
        return tuple(values)

    def _keys(self) -> list[str]:
        return ["mark", "id", "name", "state", "queue", *self.extras, "ran", "age"]

    def _cell(self, key: str, value: str, task: Task) -> Any:
        if key == "mark":
            return Text(value, style="bold magenta")
        if key == "id":
            return IdCell(value)
        if key == "state":
            return Text(value, style=look(task.status)[2], no_wrap=True)
        if key in ("age", "ran"):
            return Text(value, justify="right", no_wrap=True)
        return Text(value, no_wrap=True)

    def _add(self, task: Task, now: float) -> None:
        values = self._values(task, now)
        cells = [self._cell(k, v, task) for k, v in zip(self._keys(), values, strict=True)]
        self.add_row(*cells, key=task.id)
        self._cells[task.id] = values

    def _update(self, task: Task, now: float) -> None:
        old = self._cells.get(task.id)
        values = self._values(task, now)
        if old is None or old == values:
            return
        for key, before, after in zip(self._keys(), old, values, strict=True):
            if before != after:
                self.update_cell(task.id, key, self._cell(key, after, task))
        self._cells[task.id] = values

    # --- plans ------------------------------------------------------------------

    def cursor_task_id(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return str(self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value)
        except CellDoesNotExist:
            return None

    def apply(self, plan: RowPlan, model: Model, now: float) -> None:
        if plan.reset:
            keep = self.cursor_task_id()
            self.clear()
            self._cells.clear()
            for task_id in plan.add:
                self._add(model.tasks[task_id], now)
            self._restore_cursor(keep, 0)  # on the same task if it is still shown
            return
        keep = self.cursor_task_id()
        cursor_row = self.cursor_row
        for task_id in plan.remove:
            self.selected.discard(task_id)
            self._cells.pop(task_id, None)
        self.remove_rows(plan.remove)
        for task_id in plan.add:
            self._add(model.tasks[task_id], now)
        if plan.order is not None:
            rank = {task_id: index for index, task_id in enumerate(plan.order)}
            self.sort("id", key=lambda cell: rank.get(cell.task_id, len(rank)))
        for task_id in plan.update:
            self._update(model.tasks[task_id], now)
        if plan.remove or plan.add or plan.order is not None:
            self._restore_cursor(keep, cursor_row)

    def remove_rows(self, keys: Iterable[str]) -> None:
        """``remove_row`` for many rows at once.

        ``DataTable.remove_row`` renumbers every row below the one removed, so
        removing k rows from n costs k·n; a burst of new tasks pushes dozens of
        rows off the bottom every batch. This does what ``remove_row`` does
        (Textual is pinned exactly; ``test_remove_rows`` checks it still does)
        with one renumbering. Anything unexpected falls back to ``remove_row``.
        """
        doomed = [k for k in dict.fromkeys(map(RowKey, keys)) if k in self._row_locations]
        if len(doomed) <= 1 or not _BULK_REMOVE:
            for key in doomed:
                with contextlib.suppress(RowDoesNotExist):
                    self.remove_row(key)
            return
        gone = set(doomed)
        locations = self._row_locations
        kept = sorted((locations.get(key) or 0, key) for key in locations if key not in gone)
        for key in doomed:
            for column_key in self._data.get(key, {}):
                self._updated_cells.discard(CellKey(key, column_key))
            del self.rows[key]
            del self._data[key]
        self._row_locations = TwoWayDict({key: index for index, (_, key) in enumerate(kept)})
        self._require_update_dimensions = True
        self.check_idle()
        self.cursor_coordinate = self.cursor_coordinate
        self.hover_coordinate = self.hover_coordinate
        self._update_count += 1
        self.refresh(layout=True)

    def _restore_cursor(self, task_id: str | None, fallback_row: int) -> None:
        row = fallback_row
        if task_id is not None:
            with contextlib.suppress(RowDoesNotExist):
                row = self.get_row_index(task_id)
        row = min(row, max(0, self.row_count - 1))
        if row != self.cursor_row:
            self.move_cursor(row=row, animate=False)

    def refresh_rows(self, ids: Iterable[str], model: Model, now: float) -> None:
        for task_id in ids:
            task = model.tasks.get(task_id)
            if task is not None and task_id in self._cells:
                self._update(task, now)

    def visible_ids(self) -> list[str]:
        start = int(self.scroll_y)
        stop = min(self.row_count, start + max(1, self.size.height))
        found = []
        for row in range(start, stop):
            try:
                found.append(str(self.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value))
            except CellDoesNotExist:
                break
        return found

    def toggle_selected(self) -> None:
        task_id = self.cursor_task_id()
        if task_id is None:
            return
        self.selected ^= {task_id}
        mark = "●" if task_id in self.selected else " "
        self.update_cell(task_id, "mark", Text(mark, style="bold magenta"))
        cells = self._cells.get(task_id)
        if cells is not None:
            self._cells[task_id] = (mark, *cells[1:])
        if self.cursor_row < self.row_count - 1:
            self.move_cursor(row=self.cursor_row + 1)
        self.post_message(SelectionChanged())

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(OpenDetail(str(event.row_key.value)))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.post_message(SelectionChanged())


class TasksView(View):
    """The table, the filter line and the "N of M" note."""

    FOCUS = "#task-table"

    def __init__(self, options: ViewOptions, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.view = TaskView(limit=options.row_limit)
        self._model: Model | None = None
        self._now = 0.0
        self._sort_shown = True  # the sorted column's title is marked

    def compose(self) -> ComposeResult:
        yield Static("", id="tasks-note", classes="note")
        yield TaskTable(id="task-table")
        yield Static("", id="filter-error", classes="error")
        yield Input(
            placeholder="state:running queue:gpu name~train (enter applies, empty clears)",
            id="filter",
            compact=True,
        )

    @property
    def table(self) -> TaskTable:
        return self.query_one(TaskTable)

    def on_resize(self) -> None:
        self._relayout()

    def _relayout(self) -> None:
        if self.size.width and self.table.layout_for(self.size.width):
            self.table.build_columns()
            if self._model is not None:
                self.reset(self._model, self._now)

    def reset(self, model: Model, now: float) -> None:
        self._model, self._now = model, now
        if not self.table.columns:
            self.table.layout_for(self.size.width or 80)
            self.table.build_columns()
        self.table.selected &= set(model.tasks)
        self.table.apply(self.view.reset(model), model, now)
        self._sort_shown = self.table.mark_sort(self.view.sort)
        self.update_note(model)

    def changed(self, model: Model, ids: Iterable[str], now: float) -> None:
        plan = self.view.changed(model, ids)
        if plan:
            self.table.apply(plan, model, now)
            if plan.add or plan.remove:
                self.update_note(model)

    def second(self, model: Model, now: float) -> None:
        self._now = now
        if self.view.short:
            plan = self.view.refill(model)
            self.table.apply(plan, model, now)
        self.table.refresh_rows(self.table.visible_ids(), model, now)
        self.update_note(model)

    def update_note(self, model: Model) -> None:
        view = self.view
        shown, matching = len(view.shown), len(view.matching)
        parts = []
        if matching > shown:
            parts.append(f"{shown:,} of {matching:,} tasks (sorted {view.sort.text}; / narrows)")
        else:
            parts.append(f"{matching:,} task{'s' if matching != 1 else ''}")
            if not self._sort_shown:  # no column title carries the marker
                parts.append(f"sorted {view.sort.text}")
        if view.filter:
            parts.append(f"filter: {view.filter.text}")
        if model.server_total is not None and model.server_total > len(model.tasks):
            parts.append(f"{len(model.tasks):,} of {model.server_total:,} loaded")
        if self.table.selected:
            parts.append(f"{len(self.table.selected)} selected")
        self.query_one("#tasks-note", Static).update(" · ".join(parts), layout=False)

    def cursor_task_id(self) -> str | None:
        return self.table.cursor_task_id()
