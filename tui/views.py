"""The view registry: every screen of ``banyan-tui`` in one list.

``VIEWS`` drives everything that names a view: what the app composes (in
this order), the number keys and the footer, the ``:`` command line and its
aliases, the status bar's title, the command palette and the help screen.
Adding a screen is a new ``View`` widget (``tui.widgets.base``) plus one
line here.
"""

from __future__ import annotations

from dataclasses import dataclass

from tui.widgets.base import View
from tui.widgets.detail import DetailView
from tui.widgets.jobs import JobsView
from tui.widgets.queues import QueuesView
from tui.widgets.tasks import TasksView
from tui.widgets.tree import TreeView
from tui.widgets.workers import WorkersView


@dataclass(frozen=True)
class ViewSpec:
    name: str  # its id and its ``:`` command
    key: str  # the key that shows it
    label: str  # in the footer, the status bar, the palette and help
    aliases: tuple[str, ...]  # more ``:`` commands for it
    widget: type[View]
    about: str  # one line for the command palette
    task_actions: bool = True  # c, C and r act on the task it points at
    esc_back: bool = False  # esc returns to the view shown before it
    back_target: bool = True  # esc may return to it


VIEWS: tuple[ViewSpec, ...] = (
    ViewSpec(
        "queues",
        "1",
        "Queues",
        ("queue", "qu"),
        QueuesView,
        "per-queue counts, throughput, oldest waiting",
        task_actions=False,
    ),
    ViewSpec(
        "workers",
        "2",
        "Workers",
        ("worker", "wk", "w"),
        WorkersView,
        "load, running tasks, heartbeats",
        task_actions=False,
    ),
    ViewSpec("tasks", "3", "Tasks", ("task", "t"), TasksView, "the task table"),
    ViewSpec(
        "tree",
        "4",
        "Tree",
        ("tr",),
        TreeView,
        "the selected task's continuation tree",
        esc_back=True,
    ),
    ViewSpec(
        "detail",
        "5",
        "Detail",
        ("d",),
        DetailView,
        "the selected task's attempts, RSS and log",
        esc_back=True,
        back_target=False,
    ),
    ViewSpec(
        "jobs",
        "6",
        "Jobs",
        ("job", "j"),
        JobsView,
        "jobs: name, owner, counts by state, time span",
        task_actions=False,
    ),
)
BY_NAME: dict[str, ViewSpec] = {spec.name: spec for spec in VIEWS}
# Every name and alias of a view → its name, for ``parse_command``.
VIEW_COMMANDS: dict[str, str] = {
    **{spec.name: spec.name for spec in VIEWS},
    **{alias: spec.name for spec in VIEWS for alias in spec.aliases},
}


def title(name: str) -> str:
    """``"3 Tasks"``: the status bar's name of a view."""
    spec = BY_NAME.get(name)
    return f"{spec.key} {spec.label}" if spec else name
