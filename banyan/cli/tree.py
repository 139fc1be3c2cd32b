"""``banyan tree``: a task and its continuations, recursively, with their states
and a summary of each subtree."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from banyan.cli.context import Context, check_ids
from banyan.cli.output import state_text
from banyan.client import trees
from banyan.client.format import outcome
from banyan.client.ids import resolve_id
from banyan.client.trees import walk_tree
from banyan.documents import TaskDoc

if TYPE_CHECKING:
    from rich.text import Text
    from rich.tree import Tree

# Above this many tasks a tree shows the summary of its root only (each costs a walk).
MAX_SUMMARIZED = 2000


TREE_EPILOG = """\
examples:
  banyan tree 6650f0c2a1b2c3d4e5f60718     # the task and what runs after it

Each task with continuations shows a summary of its subtree (itself
included), e.g. "3/5 done, 1 failed". A task with several parents is shown
under each of them.
"""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "tree",
        parents=parents,
        help="show a task's continuation tree",
        description="Show a task and its continuations, recursively, with their states.",
        epilog=TREE_EPILOG,
        formatter_class=raw,
    )
    p.add_argument("id", metavar="ID")
    p.set_defaults(handler=run_tree)


# A continuation that does not wait for success says so (run_when).
_KIND = {"finished": "after any end", "failure": "if a parent failed"}


def _status(task: TaskDoc | None) -> str:
    """A task's status for a summary, from its outcome (a task the walk did not
    reach is not counted: ``descendants`` leaves it out)."""
    if task is None:
        return "?"
    result = outcome(task)
    if result != "pending":
        return result
    return "running" if task.get("state") in ("running", "pending_cancellation") else "pending"


def subtree_summary(tasks: Mapping[str, TaskDoc], root_id: str) -> str:
    """``"3/5 done, 1 failed"`` over ``root_id`` and everything after it."""
    return trees.subtree_summary(tasks, root_id, trees.doc_continuations, _status)


def _node_label(tasks: Mapping[str, TaskDoc], task_id: str, *, summary: bool) -> Text:
    from rich.text import Text

    task = tasks[task_id]
    execution = task.get("execution") or {}
    label = Text(task_id, style="bold")
    if task.get("name"):
        label.append(f" {task['name']}")
    if (run_when := task.get("run_when")) in _KIND:
        label.append(f" ({_KIND[run_when]})", style="dim")
    label.append("  ")
    label.append_text(state_text(task.get("state"), execution.get("exit_status")))
    if summary and task.get("continuations"):
        label.append(f"  [{subtree_summary(tasks, task_id)}]", style="dim")
    return label


def build_tree(tasks: Mapping[str, TaskDoc], root_id: str) -> Tree:
    """The rich tree under ``root_id``; a task already shown (several parents)
    appears again without its subtree."""

    from rich.text import Text
    from rich.tree import Tree

    summaries = len(tasks) <= MAX_SUMMARIZED
    shape = trees.build_tree(tasks, root_id, trees.doc_continuations, unloaded=False)
    tree = Tree(_node_label(tasks, root_id, summary=True))
    stack = [(tree, shape)]
    while stack:
        branch, node = stack.pop()
        for child in node.children:
            if child.repeat:
                branch.add(Text(f"{child.id} (shown above)", style="dim"))
            else:
                sub = branch.add(_node_label(tasks, child.id, summary=summaries))
                stack.append((sub, child))
    return tree


async def run_tree(ctx: Context) -> int:
    (text,) = check_ids([ctx.args.id])
    async with ctx.client() as client:
        task_id = await resolve_id(client, text)
        tasks = await walk_tree(client, await client.task(task_id))
    if ctx.out.json_mode:
        ctx.out.json(
            {
                "root": task_id,
                "summary": subtree_summary(tasks, task_id),
                "tasks": list(tasks.values()),
            }
        )
    else:
        ctx.out.show(build_tree(tasks, task_id))
    return 0
