"""The Tree view: the continuation tree of the selected task, from its
topmost known ancestor down, each node with its state and its subtree's
summary ("3/5 done, 1 failed"). Labels are redrawn in place when a node's
state changes; the tree's shape is rebuilt only when it is shown again.
Until a task has been chosen, the view is one line saying how to choose one."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static, Tree
from textual.widgets.tree import TreeNode as UiNode

from tui.messages import OpenDetail, SelectionChanged
from tui.state import Model, TreeNode, build_tree, look, short_id, subtree_summary
from tui.widgets.base import Navigator, View, ViewOptions

SUMMARY_NODES = 2_000  # larger trees: summaries on the root only
NO_TASK = "no task selected: highlight one in 3 Tasks and press 4 to see its tree"


def node_label(model: Model, node: TreeNode, *, summary: bool) -> Text:
    task = model.tasks.get(node.id)
    text = Text(short_id(node.id), style="dim")
    if task is None:
        text.append("  (not loaded)", style="dim italic")
        return text
    glyph, label, style = look(task.status)
    text.append(f" {glyph} {label:<10}", style=style)
    text.append(f" {task.label[:40]}")
    if node.repeat:
        text.append("  (shown above)", style="dim")
    elif summary and task.continuations:
        text.append(f"  [{subtree_summary(model.tasks, node.id)}]", style="dim")
    return text


class TaskTree(Tree[str]):
    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[str]) -> None:
        event.stop()
        self.post_message(SelectionChanged())

    def on_tree_node_selected(self, event: Tree.NodeSelected[str]) -> None:
        event.stop()
        if event.node.data:
            self.post_message(OpenDetail(event.node.data))


class TreeView(View):
    FOCUS = "#task-tree"

    def __init__(self, options: ViewOptions, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.root_id: str | None = None
        self.focus_id: str | None = None
        self.members: set[str] = set()
        self._shown: list[tuple[UiNode[str], TreeNode]] = []

    def compose(self) -> ComposeResult:
        yield Static(NO_TASK, id="tree-note", classes="note")
        tree = TaskTree("", id="task-tree")
        tree.show_root = True
        tree.auto_expand = False
        tree.display = False  # an empty tree is a lone "▶": say what to do instead
        yield tree

    @property
    def task_tree(self) -> TaskTree:
        return self.query_one(TaskTree)

    def show(self, model: Model, root: str, focus: str) -> None:
        self.root_id, self.focus_id = root, focus
        shape = build_tree(model.tasks, root)
        tree = self.task_tree
        tree.display = True
        tree.clear()
        self._shown = []
        self.members = set()
        summary = True
        count = 0
        stack: list[tuple[UiNode[str], TreeNode]] = [(tree.root, shape)]
        tree.root.data = root
        target: UiNode[str] | None = None
        while stack:
            ui, node = stack.pop()
            count += 1
            summary = count == 1 or len(self.members) < SUMMARY_NODES
            ui.set_label(node_label(model, node, summary=summary))
            self._shown.append((ui, node))
            self.members.add(node.id)
            if node.id == focus and target is None:
                target = ui
            branches = [
                (ui.add("", data=child.id, expand=True, allow_expand=bool(child.children)), child)
                for child in node.children
            ]
            stack.extend(reversed(branches))  # depth first, in continuation order
        tree.root.expand()
        if target is not None:
            # Node lines exist once the tree has been laid out.
            self.call_after_refresh(tree.move_cursor, target)
        self._note(model)

    def refresh_labels(self, model: Model, changed: set[str]) -> None:
        if not self.members & changed:
            return
        big = len(self._shown) > SUMMARY_NODES
        for index, (ui, node) in enumerate(self._shown):
            ui.set_label(node_label(model, node, summary=index == 0 or not big))
        self._note(model)

    def _note(self, model: Model) -> None:
        if self.root_id is None:
            return
        text = f"tree of {short_id(self.root_id)}: {len(self.members):,} tasks"
        text += f" · {subtree_summary(model.tasks, self.root_id)}"
        self.query_one("#tree-note", Static).update(text, layout=False)

    def cursor_task_id(self) -> str | None:
        node = self.task_tree.cursor_node
        return node.data if node is not None else None

    def entered(self, app: Navigator, focus_id: str | None) -> None:
        if focus_id is not None:
            app.show_tree(focus_id)
