"""``ActionsApp``: what changes tasks from the TUI: submit (the form), cancel
(with a confirmation), cancel a whole tree, retry; which of their keys are on
for what the cursor points at; and ``--read-only``, which turns them all off.
Every call runs in a Textual worker and reports with ``ActionDone``."""

from __future__ import annotations

from textual import work
from textual.widgets import DataTable

from banyan.errors import BanyanError
from tui.messages import ActionDone
from tui.navigation import TASK_ACTIONS, ViewsApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.submit import SubmitScreen
from tui.state import ACTIVE_STATES, Task, cancellable, descendants, retryable, short_id
from tui.views import BY_NAME

MUTATING = frozenset({"submit", "cancel", "cancel_tree", "retry"})
NAMED_IN_CONFIRM = 8


class ActionsApp(ViewsApp):
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in MUTATING and self.read_only:
            return False
        if action in TASK_ACTIONS and not BY_NAME[self.view].task_actions:
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

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.update_keys()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a queue or a worker: its tasks (the task table handles its own)."""
        key = str(event.row_key.value)
        if event.data_table.id == "queue-table":
            self.action_set_filter(f"queue:{key}")
        elif event.data_table.id == "worker-table":
            self.action_set_filter(f"worker:{key} state:active")

    # --- submit -----------------------------------------------------------------------

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

    # --- cancel and retry ------------------------------------------------------------

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
