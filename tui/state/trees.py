"""Continuation trees in the TUI: the topmost known ancestor of a task, and the
tree's shape, descendants and summary over the TUI's records (the rules are
``banyan.client.trees``, shared with the CLI)."""

from __future__ import annotations

from collections.abc import Mapping

from banyan.client import trees
from banyan.client.trees import TreeNode
from tui.state.model import Model
from tui.state.records import Task

__all__ = ["MAX_TREE_NODES", "TreeNode", "build_tree", "descendants", "missing_in_tree"]

MAX_TREE_NODES = 5_000


def _continuations(task: Task) -> tuple[str, ...]:
    return task.continuations


def _status(task: Task | None) -> str:
    return "?" if task is None else task.status


def tree_root(model: Model, task_id: str) -> str:
    """The topmost ancestor known (first parent by id at each step; cycles stop)."""
    seen = {task_id}
    current = task_id
    while True:
        parents = sorted(p for p in model.parents.get(current, ()) if p in model.tasks)
        if not parents or parents[0] in seen:
            return current
        current = parents[0]
        seen.add(current)


def build_tree(tasks: Mapping[str, Task], root: str, *, limit: int = MAX_TREE_NODES) -> TreeNode:
    """The continuation tree under ``root``, depth first in continuation order."""
    return trees.build_tree(tasks, root, _continuations, limit=limit)


def descendants(tasks: Mapping[str, Task], root: str) -> list[str]:
    """Ids downstream of ``root`` (not itself, loaded or not), each once, nearest first."""
    return trees.descendants(tasks, root, _continuations, unloaded=True)


def subtree_summary(tasks: Mapping[str, Task], root: str) -> str:
    """``"3/5 done, 1 failed"`` over ``root`` and everything after it."""
    return trees.subtree_summary(tasks, root, _continuations, _status, unloaded=True)


def missing_in_tree(tasks: Mapping[str, Task], root: TreeNode) -> list[str]:
    found = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.missing:
            found.append(node.id)
        stack.extend(node.children)
    return found
