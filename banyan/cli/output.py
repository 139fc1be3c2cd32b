"""What the ``banyan`` CLI prints: rich tables for people, JSON for scripts.

Commands never call ``print`` for results: they hand data to an ``Output``,
which writes JSON under ``--json`` and a rich rendering otherwise. Errors go
to stderr as one line (``banyan: <message>``), written by ``banyan.cli.main``.
The words themselves (ages, resources, outcomes) are ``banyan.client.format``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # rich is imported when something is rendered, not at start
    from rich.console import Console, RenderableType
    from rich.table import Table
    from rich.text import Text

from banyan.dependencies import SKIPPED

# Piped output is read by people too (``banyan ls | less``): do not wrap at 80.
PIPE_WIDTH = 200


STATE_STYLES: dict[str, str] = {
    "inactive": "dim",
    "available": "cyan",
    "running": "bold yellow",
    "pending_cancellation": "magenta",
    "cancelled": "red",
    "terminated": "green",
}


class Output:
    """Where one CLI invocation writes its results."""

    def __init__(self, *, json_mode: bool, file: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.file = file if file is not None else sys.stdout
        self.is_terminal = self.file.isatty()

    @cached_property
    def console(self) -> Console:
        from rich.console import Console

        return Console(
            file=self.file,
            highlight=False,
            soft_wrap=False,
            width=None if self.is_terminal else PIPE_WIDTH,
        )

    def json(self, data: Any) -> None:
        """One JSON document (indented for a terminal, compact for a pipe)."""
        indent = 2 if self.is_terminal else None
        self.file.write(json.dumps(data, indent=indent, ensure_ascii=False) + "\n")
        self.file.flush()

    def json_line(self, data: Any) -> None:
        self.file.write(json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n")
        self.file.flush()

    def line(self, text: str) -> None:
        """Plain text, never styled (ids that scripts capture)."""
        self.file.write(text + "\n")
        self.file.flush()

    def show(self, *renderables: RenderableType) -> None:
        self.console.print(*renderables)


def state_text(state: str | None, exit_status: str | None = None) -> Text:
    """A task's state, coloured; a terminated task shows its exit status instead."""
    from rich.text import Text

    if state is None:
        return Text("-")
    if state == "terminated" and exit_status:
        style = "green" if exit_status == "success" else "bold red"
        return Text(exit_status, style=style)
    if state == "cancelled" and exit_status == SKIPPED:
        return Text(exit_status, style=STATE_STYLES.get(state, ""))
    return Text(state, style=STATE_STYLES.get(state, ""))


def key_value_table(
    rows: Sequence[tuple[str, RenderableType]], *, title: str | None = None
) -> Table:
    from rich.table import Table

    table = Table(show_header=False, box=None, title=title, title_justify="left", pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    return table


def warn(message: str) -> None:
    """One line on stderr, as every CLI error is written."""
    sys.stderr.write(f"banyan: {message}\n")
    sys.stderr.flush()
