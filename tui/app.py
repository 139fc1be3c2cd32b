"""``BanyanApp``: the screens and keys of ``banyan-tui``, composed over the
live model of ``LiveApp``.

Views (1-5, or ``:queues`` …): Queues, Workers, Tasks, Tree, Detail, in a
``ContentSwitcher`` between the status bar and the footer. Keys follow
k9s/htop habits; ``--read-only`` hides every key that changes anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.suggester import SuggestFromList
from textual.widgets import ContentSwitcher, DataTable, Footer, Input, Static

from banyan.errors import BanyanError
from tui.commands import BanyanCommands
from tui.live import LiveApp
from tui.messages import (
    ActionDone,
    DetailLoaded,
    LogsLoaded,
    OpenDetail,
    SelectionChanged,
    TreeLoaded,
)
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.submit import SubmitScreen
from tui.source import DataSource
from tui.state import (
    ACTIVE_STATES,
    SORT_KEYS,
    VIEWS,
    Changes,
    FilterError,
    Sort,
    Task,
    cancellable,
    descendants,
    parse_command,
    parse_filter,
    parse_sort,
    rate_text,
    retryable,
    short_id,
    tree_root,
)
from tui.widgets.detail import LOG_LINES, DetailView
from tui.widgets.queues import QueuesView
from tui.widgets.status import StatusBar
from tui.widgets.tasks import TasksView
from tui.widgets.tree import TreeView
from tui.widgets.workers import WorkersView

MUTATING = frozenset({"submit", "cancel", "cancel_tree", "retry"})
TASK_ACTIONS = frozenset({"cancel", "cancel_tree", "retry"})
NAMED_IN_CONFIRM = 8


def clock_text(epoch_s: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch_s))


class BanyanApp(LiveApp):
    CSS_PATH = Path(__file__).with_name("banyan.tcss")
    COMMANDS = LiveApp.COMMANDS | {BanyanCommands}
    TITLE = "banyan"
    BINDINGS = [
        # One footer entry "1-5 views" for the five keys (the footer is 80 cells).
        Binding("1", "view('queues')", "views", key_display="1-5"),
        *(
            Binding(str(n), f"view('{name}')", name.capitalize(), show=False)
            for n, name in enumerate(VIEWS[1:], start=2)
        ),
        Binding("colon", "command_line", "Cmd", key_display=":"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("n", "submit", "New"),
        Binding("c", "cancel", "Cancel"),
        Binding("C", "cancel_tree", "Tree"),
        Binding("r", "retry", "Retry"),
        Binding("space", "toggle_select", "Select", show=False),
        Binding("s", "sort_next", "Sort", show=False),
        Binding("S", "sort_reverse", "Reverse", show=False),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("escape", "go_back", "Back", show=False),
        Binding("q", "quit", "Quit"),
    ]

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

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with ContentSwitcher(initial="tasks", id="views"):
            yield QueuesView(id="queues")
            yield WorkersView(id="workers")
            yield TasksView(id="tasks", limit=self.row_limit)
            yield TreeView(id="tree")
            yield DetailView(id="detail")
        yield Input(
            placeholder="queues workers tasks tree detail · sort -priority · filter … · quit",
            id="command",
            compact=True,
            suggester=SuggestFromList(
                [*VIEWS, "sort ", "filter ", "new", "help", "quit"], case_sensitive=False
            ),
        )
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#command", Input).display = False
        self.tasks_view.query_one("#filter", Input).display = False
        self.tasks_view.query_one("#filter-error", Static).display = False
        self.tasks_view.table.focus()
        self.set_interval(1.0, self._poll_logs)
        self.start_live()
        self.on_link_changed()

    # --- views --------------------------------------------------------------------

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
        if name not in VIEWS:
            return
        focus_id = self.focus_task_id()
        if name != self.view:
            self.previous_view = self.view
        self.view = name
        self.query_one(ContentSwitcher).current = name
        if name == "tree" and focus_id is not None:
            self.show_tree(focus_id)
        if name == "detail" and focus_id is not None and focus_id != self.detail_view.task_id:
            self.open_detail(focus_id)
        self._refresh_view(name)
        self._focus_view()  # a new focus redraws the footer's keys
        self.on_link_changed()

    def _focus_view(self) -> None:
        focusable = {
            "queues": "#queue-table",
            "workers": "#worker-table",
            "tasks": "#task-table",
            "tree": "#task-tree",
            "detail": "#detail-log",
        }
        self.query_one(focusable[self.view]).focus()

    def action_go_back(self) -> None:
        box = self.focused
        if isinstance(box, Input) and box.id in ("filter", "command"):
            self._close_input(box)
        elif self.view in ("tree", "detail"):
            back = (
                self.previous_view if self.previous_view not in (self.view, "detail") else "tasks"
            )
            self.action_view(back)

    def _refresh_view(self, name: str) -> None:
        if self.model is None:
            return
        now = self.clock()
        if name == "queues":
            self.query_one(QueuesView).refresh_from(self.model, now)
        elif name == "workers":
            self.query_one(WorkersView).refresh_from(self.model, now, self.heartbeat_interval_s)
        elif name == "detail":
            self.detail_view.redraw(self.model, now)

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
        self._refresh_view(self.view)
        self.refresh_bindings()

    def on_model_changed(self, changes: Changes) -> None:
        model = self.model
        assert model is not None
        now = self.clock()
        if changes.tasks:
            self.tasks_view.changed(model, changes.tasks, now)
            self.tree_view.refresh_labels(model, changes.tasks)
        if self.view == "workers" and (changes.workers or changes.tasks & model.active):
            self.query_one(WorkersView).refresh_from(model, now, self.heartbeat_interval_s)
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
            view=self.view,
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
        if self.view in ("queues", "workers", "detail"):
            self._refresh_view(self.view)

    # --- selection ----------------------------------------------------------------

    def focus_task_id(self) -> str | None:
        """The one task the current view points at."""
        if self.view == "tasks":
            return self.tasks_view.table.cursor_task_id()
        if self.view == "tree":
            return self.tree_view.cursor_task_id()
        if self.view == "detail":
            return self.detail_view.task_id
        return None

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

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in MUTATING and self.read_only:
            return False
        if action in TASK_ACTIONS and self.view in ("queues", "workers"):
            return False
        if action == "cancel":
            return True if cancellable(self.target_tasks()) else None
        if action == "cancel_tree":
            return True if self._tree_targets() else None
        if action == "retry":
            return True if retryable(self.target_tasks()) else None
        if action in ("toggle_select", "sort_next", "sort_reverse"):
            return self.view == "tasks"
        return True

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
        self.tasks_view.view.sort = Sort(key, key in ("id", "priority", "updated"))
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
            name, argument = parse_command(event.value)
        except FilterError as exc:
            self.notify(str(exc), severity="error")
            return
        if name in VIEWS:
            self.action_view(name)
        elif name == "filter":
            self.action_set_filter(argument)
        elif name == "sort":
            self.action_set_sort(argument or "-id")
        elif name == "submit":
            self.action_submit()
        elif name == "help":
            self.action_help()
        elif name == "quit":
            self.exit()

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

    # --- detail and tree --------------------------------------------------------------

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

    # --- changing things ----------------------------------------------------------------

    def action_submit(self) -> None:
        if self.read_only:
            return
        self.push_screen(SubmitScreen(self.source, self._resolve_short_id), self._submitted)

    def _resolve_short_id(self, text: str) -> str | None:
        if self.model is None:
            return None
        found = [i for i in self.model.tasks if i.endswith(text) or i.startswith(text)]
        return found[0] if len(found) == 1 else None

    def _submitted(self, task_id: str | None) -> None:
        if task_id is not None:
            self.notify(f"submitted {task_id}", timeout=4)

    def _describe(self, tasks: list[Task]) -> str:
        lines = [f"{short_id(t.id)}  {t.label[:40]}  ({t.status})" for t in tasks]
        if len(lines) > NAMED_IN_CONFIRM:
            extra = len(lines) - NAMED_IN_CONFIRM
            lines = [*lines[:NAMED_IN_CONFIRM], f"… and {extra} more"]
        return "\n".join(lines)

    def action_cancel(self) -> None:
        tasks = cancellable(self.target_tasks())
        if self.read_only or not tasks:
            return
        ids = [t.id for t in tasks]
        running = sum(1 for t in tasks if t.state in ACTIVE_STATES)
        question = f"Cancel {len(tasks)} task{'s' if len(tasks) != 1 else ''}?"
        details = self._describe(tasks)
        if running == 1:
            details += "\n\n1 is running: its worker will be told to stop it."
        elif running:
            details += f"\n\n{running} are running: their workers will be told to stop them."

        def answered(yes: bool | None) -> None:
            if yes:
                self.tasks_view.table.selected -= set(ids)
                self._run_cancel(ids)

        self.push_screen(ConfirmScreen(question, details, yes="Cancel"), answered)

    def _tree_targets(self) -> list[Task]:
        if self.model is None:
            return []
        focus = self.focus_task_id()
        if focus is None or focus not in self.model.tasks:
            return []
        ids = [focus, *descendants(self.model.tasks, focus)]
        return cancellable([self.model.tasks[i] for i in ids if i in self.model.tasks])

    def action_cancel_tree(self) -> None:
        focus = self.focus_task_id()
        tasks = self._tree_targets()
        if self.read_only or focus is None or not tasks:
            return
        question = f"Cancel the tree of {short_id(focus)}: {len(tasks)} unfinished task(s)?"

        def answered(yes: bool | None) -> None:
            if yes:
                self._run_cancel_tree(focus)

        self.push_screen(ConfirmScreen(question, self._describe(tasks), yes="Cancel"), answered)

    def action_retry(self) -> None:
        tasks = retryable(self.target_tasks())
        if self.read_only or not tasks:
            return
        self._run_retry([t.id for t in tasks])

    @work(group="actions")
    async def _run_cancel(self, ids: list[str]) -> None:
        try:
            done = await self.source.cancel(ids)
        except BanyanError as exc:
            self.post_message(ActionDone("cancel", exc.message))
            return
        self.post_message(ActionDone(f"cancel sent for {len(done)} task(s)"))

    @work(group="actions")
    async def _run_cancel_tree(self, task_id: str) -> None:
        try:
            done = await self.source.cancel_tree(task_id)
        except BanyanError as exc:
            self.post_message(ActionDone("cancel tree", exc.message))
            return
        self.post_message(ActionDone(f"cancel sent for {len(done)} task(s) of the tree"))

    @work(group="actions")
    async def _run_retry(self, ids: list[str]) -> None:
        try:
            await self.source.retry(ids)
        except BanyanError as exc:
            self.post_message(ActionDone("retry", exc.message))
            return
        self.post_message(ActionDone(f"retrying {len(ids)} task(s)"))

    def on_action_done(self, message: ActionDone) -> None:
        if message.error is not None:
            self.notify(f"{message.what}: {message.error}", severity="error", timeout=6)
        else:
            self.notify(message.what, timeout=3)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(read_only=self.read_only))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.update_keys()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a queue or a worker: its tasks (the task table handles its own)."""
        key = str(event.row_key.value)
        if event.data_table.id == "queue-table":
            self.action_set_filter(f"queue:{key}")
        elif event.data_table.id == "worker-table":
            self.action_set_filter(f"worker:{key} state:active")
