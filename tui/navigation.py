"""``ViewsApp``: moving between the views of the registry (``tui.views``), the
task under the cursor and the selection, the filter, the sort and the ``:``
command line, and the detail and tree views' data (loaded in workers).

It sits between ``LiveApp`` (the live model) and ``ActionsApp`` (what
changes tasks); ``BanyanApp`` composes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual import on, work
from textual.widgets import ContentSwitcher, Input, Static

from banyan.errors import BanyanError
from tui.live import LiveApp
from tui.messages import DetailLoaded, LogsLoaded, OpenDetail, SelectionChanged, TreeLoaded
from tui.screens.help import HelpScreen
from tui.source import DataSource
from tui.state import (
    ACTIVE_STATES,
    SORT_KEYS,
    Changes,
    FilterError,
    Sort,
    Task,
    parse_command,
    parse_filter,
    parse_sort,
    rate_text,
    tree_root,
)
from tui.views import BY_NAME, VIEW_COMMANDS, title
from tui.widgets.base import View, ViewOptions
from tui.widgets.detail import LOG_LINES, DetailView
from tui.widgets.status import StatusBar
from tui.widgets.tasks import TasksView
from tui.widgets.tree import TreeView

TASK_ACTIONS = frozenset({"cancel", "cancel_tree", "retry"})


def clock_text(epoch_s: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch_s))


class ViewsApp(LiveApp):
    def __init__(
        self,
        source: DataSource,
        *,
        read_only: bool = False,
        clock: Callable[[], float] = time.time,
        apply_interval_s: float = 0.1,
        heartbeat_interval_s: float = 5.0,
        row_limit: int = 1000,
        clock_format: Callable[[float], str] = clock_text,
    ) -> None:
        super().__init__(
            source,
            clock=clock,
            apply_interval_s=apply_interval_s,
            heartbeat_interval_s=heartbeat_interval_s,
        )
        self.read_only = read_only
        self.row_limit = row_limit
        self.clock_format = clock_format
        self.view = "tasks"
        self.previous_view = "tasks"
        self._keys_shown: tuple[bool | None, ...] = ()

    @property
    def view_options(self) -> ViewOptions:
        return ViewOptions(row_limit=self.row_limit, heartbeat_interval_s=self.heartbeat_interval_s)

    # --- views --------------------------------------------------------------------

    @property
    def current_view(self) -> View:
        return self.query_one(f"#{self.view}", View)

    @property
    def tasks_view(self) -> TasksView:
        return self.query_one(TasksView)

    @property
    def tree_view(self) -> TreeView:
        return self.query_one(TreeView)

    @property
    def detail_view(self) -> DetailView:
        return self.query_one(DetailView)

    def action_view(self, name: str) -> None:
        if name not in BY_NAME:
            return
        focus_id = self.focus_task_id()
        if name != self.view:
            self.previous_view = self.view
        self.view = name
        self.query_one(ContentSwitcher).current = name
        self.current_view.entered(self, focus_id)
        self._refresh_view()
        self._focus_view()  # a new focus redraws the footer's keys
        self.on_link_changed()

    def _focus_view(self) -> None:
        self.query_one(self.current_view.FOCUS).focus()

    def action_go_back(self) -> None:
        box = self.focused
        if isinstance(box, Input) and box.id in ("filter", "command"):
            self._close_input(box)
        elif BY_NAME[self.view].esc_back:
            back = self.previous_view
            if back == self.view or not BY_NAME[back].back_target:
                back = "tasks"
            self.action_view(back)

    def _refresh_view(self) -> None:
        if self.model is not None:
            self.current_view.redraw(self.model, self.clock())

    def action_help(self) -> None:
        self.push_screen(HelpScreen(read_only=self.read_only))

    # --- the model drawn ------------------------------------------------------------

    def on_model_reset(self) -> None:
        assert self.model is not None
        for note in self.notes:
            self.notify(note, severity="warning", timeout=8)
        self.tasks_view.reset(self.model, self.clock())
        self.tasks_view.view.forget_missing(self.model)
        if self.tree_view.root_id is not None:
            focus = self.tree_view.focus_id or self.tree_view.root_id
            self.tree_view.show(self.model, self.tree_view.root_id, focus)
        self._refresh_view()
        self.refresh_bindings()

    def on_model_changed(self, changes: Changes) -> None:
        model = self.model
        assert model is not None
        now = self.clock()
        if changes.tasks:
            self.tasks_view.changed(model, changes.tasks, now)
            self.tree_view.refresh_labels(model, changes.tasks)
        if self.view == "workers" and (changes.workers or changes.tasks & model.active):
            self.current_view.redraw(model, now)
        detail_id = self.detail_view.task_id
        if detail_id is not None and detail_id in (changes.tasks | changes.usage):
            if self.view == "detail":
                self.detail_view.redraw(model, now)
            task = model.tasks.get(detail_id)
            if detail_id in changes.tasks and task is not None and task.final:
                self._load_detail(detail_id)  # the last attempt, its exit status, final log
        if changes.tasks & set(self.target_ids()):
            self.update_keys()

    def on_link_changed(self) -> None:
        now = self.clock()
        self.query_one(StatusBar).show(
            title=title(self.view),
            server=self.source.server,
            link=self.link.label(now, self.clock_format),
            rate=rate_text(self.rate.rate(now)),
            error=self.link.error,
            read_only=self.read_only,
        )
        self.query_one("#views").set_class(not self.link.live, "-stale")

    def on_second(self, now: float) -> None:
        self.on_link_changed()
        if self.model is None:
            return
        self.tasks_view.second(self.model, now)
        self.current_view.redraw(self.model, now)

    # --- selection ----------------------------------------------------------------

    def focus_task_id(self) -> str | None:
        """The one task the current view points at."""
        return self.current_view.cursor_task_id()

    def target_ids(self) -> list[str]:
        """What c, C and r act on: the selection, else the task under the cursor."""
        if self.view == "tasks" and self.tasks_view.table.selected:
            table = self.tasks_view.table
            return [i for i in self.tasks_view.view.shown if i in table.selected]
        focus = self.focus_task_id()
        return [focus] if focus is not None else []

    def target_tasks(self) -> list[Task]:
        if self.model is None:
            return []
        return [self.model.tasks[i] for i in self.target_ids() if i in self.model.tasks]

    def on_selection_changed(self, message: SelectionChanged) -> None:
        if self.model is not None:
            self.tasks_view.update_note(self.model)
        self.update_keys()

    def update_keys(self) -> None:
        """Redraw the footer only when a task key turns on or off (a footer
        redraw costs a layout; the cursor moves far more often than that)."""
        keys = tuple(self.check_action(a, ()) for a in sorted(TASK_ACTIONS))
        if keys != self._keys_shown:
            self._keys_shown = keys
            self.refresh_bindings()

    def action_toggle_select(self) -> None:
        self.tasks_view.table.toggle_selected()

    # --- filter, sort, command line ---------------------------------------------------

    def action_filter(self) -> None:
        if self.view != "tasks":
            self.action_view("tasks")
        box = self.tasks_view.query_one("#filter", Input)
        box.value = self.tasks_view.view.filter.text
        box.display = True
        box.focus()

    def action_set_filter(self, text: str) -> None:
        try:
            flt = parse_filter(text)
        except FilterError as exc:
            self.notify(str(exc), severity="error")
            return
        self.tasks_view.view.filter = flt
        if self.view != "tasks":
            self.action_view("tasks")
        self._reset_tasks()

    def action_set_sort(self, text: str) -> None:
        try:
            self.tasks_view.view.sort = parse_sort(text)
        except FilterError as exc:
            self.notify(str(exc), severity="error")
            return
        self._reset_tasks()

    def action_sort_next(self) -> None:
        current = self.tasks_view.view.sort
        key = SORT_KEYS[(SORT_KEYS.index(current.key) + 1) % len(SORT_KEYS)]
        self.tasks_view.view.sort = Sort(key, key in ("created", "id", "priority", "updated"))
        self._reset_tasks()
        self.notify(f"sorted by {self.tasks_view.view.sort.text}", timeout=2)

    def action_sort_reverse(self) -> None:
        current = self.tasks_view.view.sort
        self.tasks_view.view.sort = Sort(current.key, not current.descending)
        self._reset_tasks()

    def _reset_tasks(self) -> None:
        if self.model is not None:
            self.tasks_view.reset(self.model, self.clock())
        self.refresh_bindings()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        error = self.tasks_view.query_one("#filter-error", Static)
        try:
            flt = parse_filter(event.value)
        except FilterError as exc:
            error.update(str(exc))
            error.display = True
            return
        error.display = False
        self.tasks_view.view.filter = flt
        self._close_input(event.input)
        self._reset_tasks()

    @on(Input.Submitted, "#command")
    def _command_submitted(self, event: Input.Submitted) -> None:
        self._close_input(event.input)
        if not event.value.strip():
            return
        try:
            name, argument = parse_command(event.value, VIEW_COMMANDS)
        except FilterError as exc:
            self.notify(str(exc), severity="error")
            return
        if name in BY_NAME:
            self.action_view(name)
        elif name == "filter":
            self.action_set_filter(argument)
        elif name == "sort":
            self.action_set_sort(argument or "-created")
        elif name == "quit":
            self.exit()
        else:  # submit, help: the same action as their key
            action: Callable[[], Any] = getattr(self, f"action_{name}")
            action()

    def action_command_line(self) -> None:
        box = self.query_one("#command", Input)
        box.value = ""
        box.display = True
        box.focus()

    def _close_input(self, box: Input) -> None:
        box.display = False
        if box.id == "filter":
            self.tasks_view.query_one("#filter-error", Static).display = False
        self._focus_view()

    # --- the detail and tree views' data ------------------------------------------------

    def on_open_detail(self, message: OpenDetail) -> None:
        self.open_detail(message.task_id)
        if self.view != "detail":
            self.action_view("detail")

    def open_detail(self, task_id: str) -> None:
        self.detail_view.open(task_id)
        if self.model is not None:
            self.detail_view.redraw(self.model, self.clock())
        self._load_detail(task_id)
        self._fetch_logs(task_id)

    @work(exclusive=True, group="detail")
    async def _load_detail(self, task_id: str) -> None:
        try:
            doc = await self.source.task(task_id)
            history = await self.source.history(task_id)
            usage = await self.source.memory_usage(task_id)
        except BanyanError as exc:
            self.post_message(DetailLoaded(task_id, None, [], [], error=exc.message))
            return
        self.post_message(DetailLoaded(task_id, doc, history, usage))

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        if message.task_id != self.detail_view.task_id:
            return
        if message.error is not None:
            self.detail_view.set_error(message.error)
            return
        if message.task is not None:
            self.merge_tasks({message.task_id: message.task})
        self.detail_view.set_loaded(message.task, message.history, message.usage)
        if self.model is not None:
            self.detail_view.redraw(self.model, self.clock())
        self._fetch_logs(message.task_id)

    def _poll_logs(self) -> None:
        task_id = self.detail_view.task_id
        if self.view != "detail" or task_id is None or self.model is None:
            return
        task = self.model.tasks.get(task_id)
        if task is not None and task.state in ACTIVE_STATES:
            self._fetch_logs(task_id)

    @work(exclusive=True, group="logs")
    async def _fetch_logs(self, task_id: str) -> None:
        try:
            logs = await self.source.logs(task_id, tail=LOG_LINES)
        except BanyanError:
            return
        self.post_message(LogsLoaded(task_id, logs))

    def on_logs_loaded(self, message: LogsLoaded) -> None:
        if message.task_id == self.detail_view.task_id:
            self.detail_view.set_logs(message.logs)

    def show_tree(self, task_id: str) -> None:
        if self.model is None:
            return
        root = tree_root(self.model, task_id)
        self.tree_view.show(self.model, root, task_id)
        self._load_tree(root)

    @work(exclusive=True, group="tree")
    async def _load_tree(self, root: str) -> None:
        try:
            found = await self.source.tree(root)
        except BanyanError as exc:
            self.post_message(TreeLoaded(root, {}, error=exc.message))
            return
        self.post_message(TreeLoaded(root, found))

    def on_tree_loaded(self, message: TreeLoaded) -> None:
        if message.error is not None:
            self.notify(message.error, severity="error")
            return
        touched = self.merge_tasks(message.tasks)
        if self.model is not None and message.root == self.tree_view.root_id:
            self.tree_view.show(self.model, message.root, self.tree_view.focus_id or message.root)
            self.tasks_view.changed(self.model, touched, self.clock())
