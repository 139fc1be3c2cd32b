"""``BanyanApp``: the screens and keys of ``banyan-tui``, composed.

The views come from the registry (``tui.views``): each is shown by its
number key or ``:name``, in a ``ContentSwitcher`` between the status bar and
the footer. Keys follow k9s/htop habits; ``--read-only`` hides every key that
changes anything. The behaviour lives in the classes this one composes:
``LiveApp`` (the live model, ``tui.live``), ``ViewsApp`` (moving between
views, filter, sort, command line; ``tui.navigation``) and ``ActionsApp``
(submit, cancel, retry; ``tui.actions``).
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.suggester import SuggestFromList
from textual.widgets import ContentSwitcher, Footer, Input, Static

from tui.actions import ActionsApp
from tui.commands import BanyanCommands
from tui.navigation import clock_text
from tui.views import VIEWS
from tui.widgets.status import StatusBar

__all__ = ["BanyanApp", "clock_text"]

FIRST, LAST = VIEWS[0], VIEWS[-1]


class BanyanApp(ActionsApp):
    CSS_PATH = Path(__file__).with_name("banyan.tcss")
    COMMANDS = ActionsApp.COMMANDS | {BanyanCommands}
    TITLE = "banyan"
    BINDINGS = [
        # One footer entry "1-5 views" for every view key (the footer is 80 cells).
        Binding(FIRST.key, f"view('{FIRST.name}')", "views", key_display=f"{FIRST.key}-{LAST.key}"),
        *(Binding(v.key, f"view('{v.name}')", v.label, show=False) for v in VIEWS[1:]),
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

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with ContentSwitcher(initial="tasks", id="views"):
            for spec in VIEWS:
                yield spec.widget(self.view_options, id=spec.name)
        names = " ".join(spec.name for spec in VIEWS)
        yield Input(
            placeholder=f"{names} · sort -priority · filter … · quit",
            id="command",
            compact=True,
            suggester=SuggestFromList(
                [*(spec.name for spec in VIEWS), "sort ", "filter ", "new", "help", "quit"],
                case_sensitive=False,
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
