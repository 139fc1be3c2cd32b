"""The TUI's view of issue 13: unresponsive workers (pure state) and the
Detail view's rows for time limits, begin times and the crash budget."""

from __future__ import annotations

from rich.console import Console

from tui.state import Task, Worker, unresponsive
from tui.widgets.detail import fields_table, time_and_abandon_rows

T0 = 1_800_000_000.0


def test_a_worker_quiet_for_two_heartbeats_is_unresponsive() -> None:
    worker = Worker("w", state="busy", last_heartbeat=T0 - 9)
    assert not unresponsive(worker, T0, 5.0)
    worker.last_heartbeat = T0 - 11
    assert unresponsive(worker, T0, 5.0)
    worker.state = "disconnected"  # the socket closed, not lost yet
    assert unresponsive(worker, T0, 5.0)
    for settled in ("lost", "left"):
        worker.state = settled
        assert not unresponsive(worker, T0, 5.0)


def test_detail_rows_show_limits_begin_and_abandons() -> None:
    doc = {
        "time_limit": 5400,
        "not_before": "Tue, 01 Dec 2026 02:00:00 GMT",
        "abandon_count": 1,
        "max_abandon_count": 3,
    }
    assert time_and_abandon_rows(doc) == [
        ("time limit", "1h 30m"),
        ("not before", "Tue, 01 Dec 2026 02:00:00 GMT"),
        ("abandons", "1 of 3"),
    ]
    assert time_and_abandon_rows({}) == []


def test_detail_says_when_the_task_s_worker_is_unresponsive() -> None:
    task = Task(id="a" * 24, command="sleep 9", state="running", worker="w1", attempt=1)
    console = Console(width=100, record=True)
    console.print(fields_table(task, {}, T0, worker_quiet=True))
    assert "w1 is unresponsive" in console.export_text()
    console = Console(width=100, record=True)
    console.print(fields_table(task, {}, T0))
    assert "unresponsive" not in console.export_text()
