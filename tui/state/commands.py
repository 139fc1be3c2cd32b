"""The ``:`` command line: a view's name or alias (from the view registry,
``tui.views``), or ``filter``, ``sort``, ``new``, ``help``, ``quit``."""

from __future__ import annotations

from collections.abc import Mapping

from tui.state.filters import FilterError

COMMANDS: dict[str, str] = {
    "filter": "filter",
    "f": "filter",
    "sort": "sort",
    "new": "submit",
    "submit": "submit",
    "help": "help",
    "quit": "quit",
    "q": "quit",
    "q!": "quit",
    "exit": "quit",
}


def parse_command(text: str, views: Mapping[str, str]) -> tuple[str, str]:
    """``":tasks"`` → ``("tasks", "")``; ``"sort -priority"`` → ``("sort", "-priority")``.
    ``views`` maps each view's name and aliases to its name."""
    word, _, rest = text.strip().lstrip(":").strip().partition(" ")
    name = views.get(word.lower()) or COMMANDS.get(word.lower())
    if name is None:
        names = dict.fromkeys(views.values())
        known = ", ".join((*names, "filter", "sort", "new", "help", "quit"))
        raise FilterError(f"unknown command {word!r}; try {known}")
    return name, rest.strip()
