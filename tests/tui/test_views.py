"""The view registry (``tui.views``): every view in it is composed, has its
key, its ``:`` command and aliases, its status bar title, its palette entry
and its line in the help, all from its one entry."""

from __future__ import annotations

from collections.abc import Callable

from tests.tui.helpers import started
from tui.app import BanyanApp
from tui.commands import VIEW_COMMANDS as PALETTE
from tui.screens.help import KEYS
from tui.state import parse_command
from tui.views import VIEW_COMMANDS, VIEWS, title
from tui.widgets.base import View
from tui.widgets.status import StatusBar

SIZE = (80, 24)


def test_every_view_is_named_everywhere_from_its_entry() -> None:
    bindings = {b.key: b.action for b in BanyanApp.BINDINGS}
    keys_line, command_line = KEYS[0][1], KEYS[1][1]
    for spec in VIEWS:
        assert bindings[spec.key] == f"view('{spec.name}')"
        assert (spec.label, spec.about, f"view('{spec.name}')") in PALETTE
        assert spec.label in keys_line and f":{spec.name}" in command_line
        for word in (spec.name, *spec.aliases):
            assert parse_command(f":{word}", VIEW_COMMANDS) == (spec.name, "")
        assert title(spec.name) == f"{spec.key} {spec.label}"
        assert issubclass(spec.widget, View) and spec.widget.FOCUS.startswith("#")
    assert len({s.key for s in VIEWS}) == len({s.name for s in VIEWS}) == len(VIEWS)


async def test_each_views_key_shows_it_focused_and_titled(
    make_app: Callable[..., BanyanApp],
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        for spec in VIEWS:
            await pilot.press(spec.key)
            await pilot.pause()
            assert app.view == spec.name
            assert isinstance(app.current_view, spec.widget)
            focused = app.focused
            assert focused is not None and focused is app.query_one(spec.widget.FOCUS)
            assert f" {title(spec.name)} " in str(app.query_one(StatusBar).render())
