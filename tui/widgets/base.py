"""``View``: what every screen of the TUI's view registry (``tui.views``) is.

The app drives every view through this one interface: it builds it with the
app's ``ViewOptions``, focuses its ``FOCUS`` widget when it is shown, calls
``entered`` then (the tree and the detail load the task under the cursor),
``redraw`` when it is shown and once a second while it is, and asks it for
the task under its cursor. A view that needs none of these keeps the
defaults. ``RowTable`` is the row-cursor table every view's table is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable

from tui.state import Model


@dataclass(frozen=True)
class ViewOptions:
    """The app's settings a view may need when it is built."""

    row_limit: int = 1000
    heartbeat_interval_s: float = 5.0


class RowTable(DataTable[Any]):
    """A ``DataTable`` with a row cursor where Home and End go to the first and last
    row, as in less or htop (DataTable's own Home and End scroll sideways)."""

    BINDINGS = [
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
    ]

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cursor_type", "row")
        super().__init__(**kwargs)


class Navigator(Protocol):
    """What a view may ask of the app when it is entered."""

    def show_tree(self, task_id: str) -> None: ...

    def open_detail(self, task_id: str) -> None: ...


class View(Vertical):
    """One screen of the TUI (an entry of ``tui.views.VIEWS``)."""

    FOCUS: ClassVar[str]  # the selector of the widget that takes the focus

    def __init__(self, options: ViewOptions, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.options = options

    def entered(self, app: Navigator, focus_id: str | None) -> None:
        """The view was switched to; ``focus_id`` is the task the previous view pointed at."""

    def redraw(self, model: Model, now: float) -> None:
        """Draw the model again (when shown, and once a second while shown)."""

    def cursor_task_id(self) -> str | None:
        """The one task this view points at, if any."""
        return None
