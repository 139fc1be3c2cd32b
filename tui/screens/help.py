"""``?``: every key, what it does, and the filter language (the views from
the view registry)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.views import VIEWS

KEYS = (
    (" ".join(v.key for v in VIEWS), ", ".join(v.label for v in VIEWS)),
    (":", f"command line: {' '.join(':' + v.name for v in VIEWS)} :sort KEY :filter … :quit"),
    ("/", "filter tasks: state:running queue:gpu name~train -state:success"),
    ("s / S", "sort by the next column / reverse the order (▼ ▲ mark the column)"),
    ("home / end", "the first / last row of a table"),
    ("space", "select or unselect the task (several for c)"),
    ("enter", "a task's detail (attempts, RSS, log); on a queue or worker: its tasks"),
    ("esc", "back from the tree or the detail; closes a prompt"),
    ("n", "submit a task"),
    ("c", "cancel the selected task(s), after a confirmation"),
    ("C", "cancel the task's whole tree"),
    ("r", "retry a failed or cancelled task"),
    ("ctrl+p", "command palette"),
    ("?", "this help"),
    ("q", "quit"),
)
FILTERS = (
    ("state:running,failed", "state is one of these (also: active, waiting, ended, terminated)"),
    ("queue:gpu", "exactly this queue (also owner:, worker:, id:)"),
    ("name~train", "name or command contains (any field takes ~)"),
    ("-state:success", "a leading - negates"),
    ("train", "a bare word: name or command contains it"),
)


def _table(rows: tuple[tuple[str, str], ...], title: str) -> Table:
    table = Table(title=title, title_justify="left", box=None, show_header=False)
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for key, what in rows:
        table.add_row(key, what)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, *, read_only: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        keys: tuple[tuple[str, str], ...] = KEYS
        if self.read_only:
            keys = tuple(k for k in KEYS if k[0] not in ("n", "c", "C", "r"))
        with VerticalScroll(id="help-dialog", classes="dialog"):
            yield Static(_table(keys, "[b]Keys[/b]"))
            yield Static(_table(FILTERS, "[b]Filter[/b]"))
            note = (
                "read-only: submitting, cancelling and retrying are off" if self.read_only else ""
            )
            yield Static(Text(note + "\nesc closes", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
