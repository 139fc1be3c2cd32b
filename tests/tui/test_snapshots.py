"""Snapshot tests (pytest-textual-snapshot) at 80x24 (one at 140x24) on fixed data with a
fixed clock. ``pytest --snapshot-update tests/tui`` rewrites the SVGs in
``__snapshots__/``; look at them before committing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input

from tests.tui.helpers import T0, sample_tasks, sample_workers, started, tid, wait_until
from tui.app import BanyanApp
from tui.fake import FakeSource
from tui.screens.confirm import ConfirmScreen
from tui.widgets.tasks import TaskTable

SnapCompare = Callable[..., bool]


async def live(pilot: Pilot[Any]) -> None:
    await started(pilot)


def test_tasks_screen(snap_compare: SnapCompare, make_app: Callable[..., BanyanApp]) -> None:
    assert snap_compare(make_app(), run_before=live)


def test_workers_screen(snap_compare: SnapCompare, make_app: Callable[..., BanyanApp]) -> None:
    assert snap_compare(make_app(), press=["2"], run_before=live)


def test_tree_screen(snap_compare: SnapCompare, make_app: Callable[..., BanyanApp]) -> None:
    async def on_the_tree(pilot: Pilot[Any]) -> None:
        app = await started(pilot)
        table = app.query_one(TaskTable)
        table.move_cursor(row=table.get_row_index(tid(7)))
        await pilot.press("4")
        await pilot.pause(0.1)

    assert snap_compare(make_app(), run_before=on_the_tree)


def test_submit_form_errors(snap_compare: SnapCompare, make_app: Callable[..., BanyanApp]) -> None:
    async def with_errors(pilot: Pilot[Any]) -> None:
        app = await started(pilot)
        await pilot.press("n")
        await pilot.pause()
        app.screen.query_one("#f-memory", Input).value = "12 XB"
        app.screen.query_one("#f-memory", Input).cursor_blink = False
        await pilot.press("enter")
        for box in app.screen.query(Input):
            box.cursor_blink = False

    assert snap_compare(make_app(), run_before=with_errors)


def test_cancel_confirmation(snap_compare: SnapCompare, make_app: Callable[..., BanyanApp]) -> None:
    async def confirming(pilot: Pilot[Any]) -> None:
        app = await started(pilot)
        table = app.query_one(TaskTable)
        table.move_cursor(row=table.get_row_index(tid(18)))
        await pilot.press("space", "space", "c")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))

    assert snap_compare(make_app(), run_before=confirming)


def test_stale_read_only(
    snap_compare: SnapCompare, fake: FakeSource, make_app: Callable[..., BanyanApp]
) -> None:
    now = [float(T0)]

    async def stale(pilot: Pilot[Any]) -> None:
        app = await started(pilot)
        fake.refuse_connections = True
        fake.disconnect()
        await wait_until(pilot, lambda: not app.link.live)
        now[0] += 60
        await pilot.pause(1.2)  # the once-a-second redraw

    assert snap_compare(make_app(read_only=True, clock=lambda: now[0]), run_before=stale)


def test_tasks_screen_wide(snap_compare: SnapCompare, make_app: Callable[..., BanyanApp]) -> None:
    """A terminal wide enough for PRIO and WORKER/REASON beside whole ids: a running task's
    worker, a waiting task's reason in brackets, beside RAN and the sort marker."""
    docs = sample_tasks()
    for doc in docs:
        if doc["state"] == "inactive":
            doc["_pending_reason"] = {"code": "held", "reason": "held: make it available to run"}
    source = FakeSource(docs, sample_workers(), clock=lambda: float(T0))
    assert snap_compare(make_app(source=source), run_before=live, terminal_size=(160, 24))
