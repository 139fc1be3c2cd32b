"""Continuation trees, for every front end: fetching the tasks reachable from
one (level by level, a hundred ids per query), the ids downstream of a task,
the tree's shape in drawing order, and a subtree's one-line summary.

The shape functions take any mapping of tasks (API documents for the CLI,
the TUI's records) with a function that reads a task's continuations, so
the rules (depth first, a task with several parents expanded once, a bound
on the size) are written once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from banyan.documents import TaskDoc

if TYPE_CHECKING:
    from banyan.client.http import Client

# Ids per ``where={"_id": {"$in": [...]}}`` query: keeps the URL well under
# the server's request-line limit (8 KiB).
IDS_PER_QUERY = 100

T = TypeVar("T")
Continuations = Callable[[T], Iterable[str]]


def chunked(items: Sequence[str], size: int = IDS_PER_QUERY) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


async def fetch_many(
    client: Client, ids: Sequence[str], *, projection: dict[str, int] | None = None
) -> dict[str, TaskDoc]:
    """The tasks with these ids, by id (unknown ids are simply absent)."""
    found: dict[str, TaskDoc] = {}
    for part in chunked(ids):
        page = await client.find(
            {"_id": {"$in": part}}, projection=projection, max_results=len(part)
        )
        found.update({item["_id"]: item for item in page["_items"]})
    return found


async def walk_tree(
    client: Client, root: TaskDoc, *, max_tasks: int = 100_000
) -> dict[str, TaskDoc]:
    """Every task reachable from ``root`` through ``continuations``, by id, level
    by level (one query per hundred ids). A task with several parents appears once."""
    tasks = {root["_id"]: root}
    frontier = [root]
    while frontier and len(tasks) < max_tasks:
        wanted = [c for t in frontier for c in t.get("continuations") or [] if c not in tasks]
        wanted = list(dict.fromkeys(wanted))[: max_tasks - len(tasks)]
        if not wanted:
            break
        found = await fetch_many(client, wanted)
        tasks.update(found)
        frontier = list(found.values())
    return tasks


def doc_continuations(doc: TaskDoc) -> list[str]:
    """A task document's continuations (``[]`` when absent or projected away)."""
    return list(doc.get("continuations") or [])


def descendants(
    tasks: Mapping[str, T],
    root: str,
    continuations: Continuations[T],
    *,
    unloaded: bool = False,
) -> list[str]:
    """Ids downstream of ``root`` (not itself), each once, nearest first.
    Ids not in ``tasks`` are left out unless ``unloaded``."""
    seen: dict[str, None] = {}
    frontier = [root]
    while frontier:
        following = []
        for task_id in frontier:
            task = tasks.get(task_id)
            for child in continuations(task) if task is not None else ():
                if child in seen or child == root or (not unloaded and child not in tasks):
                    continue
                seen[child] = None
                following.append(child)
        frontier = following
    return list(seen)


@dataclass
class TreeNode:
    """One task in a drawn tree."""

    id: str
    children: list[TreeNode] = field(default_factory=list)
    repeat: bool = False  # shown above already (a task with several parents)
    missing: bool = False  # not loaded


def build_tree(
    tasks: Mapping[str, T],
    root: str,
    continuations: Continuations[T],
    *,
    limit: int | None = None,
    unloaded: bool = True,
) -> TreeNode:
    """The continuation tree under ``root``, depth first in continuation order
    (so "shown above" is true where it is drawn). A task reached again is a
    ``repeat`` leaf; one not in ``tasks`` is a ``missing`` leaf, or left out
    unless ``unloaded``. At most ``limit`` nodes are visited."""
    top = TreeNode(root, missing=root not in tasks)
    expanded = {root}
    count = 1
    stack = [(top, iter(continuations(tasks[root]) if root in tasks else ()))]
    while stack:
        node, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            continue
        if not unloaded and child not in tasks:
            continue  # beyond the walk's bound
        count += 1
        if limit is not None and count > limit:
            break
        if child in expanded:
            node.children.append(TreeNode(child, repeat=True))
            continue
        expanded.add(child)
        branch = TreeNode(child, missing=child not in tasks)
        node.children.append(branch)
        if child in tasks:
            stack.append((branch, iter(continuations(tasks[child]))))
    return top


def summary_text(statuses: Sequence[str]) -> str:
    """``"3/5 done, 1 failed"`` from the statuses (``banyan.client.format.status_of``)
    of a task and everything after it."""
    parts = [f"{statuses.count('success')}/{len(statuses)} done"]
    for label, count in (
        ("failed", statuses.count("failed")),
        ("cancelled", statuses.count("cancelled")),
        ("running", statuses.count("running") + statuses.count("cancelling")),
    ):
        if count:
            parts.append(f"{count} {label}")
    return ", ".join(parts)


def subtree_summary(
    tasks: Mapping[str, T],
    root: str,
    continuations: Continuations[T],
    status: Callable[[T | None], str],
    *,
    unloaded: bool = False,
) -> str:
    """``"3/5 done, 1 failed"`` over ``root`` and everything after it; ``status``
    names each task's status (``None`` for one not loaded)."""
    ids = [root, *descendants(tasks, root, continuations, unloaded=unloaded)]
    return summary_text([status(tasks.get(i)) for i in ids])
