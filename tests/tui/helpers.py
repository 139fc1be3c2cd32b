"""What the TUI tests share: a fixed clock, a small fixed set of tasks and
workers for a ``FakeSource``, and bounded waits on a running app."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Static

from tui.app import BanyanApp
from tui.fake import make_id, task_doc, worker_doc

T0 = 1_800_000_000  # the fixed "now" of every TUI test
STATES = [
    ("running", None),
    ("available", None),
    ("terminated", "success"),
    ("terminated", "failure"),
    ("cancelled", None),
    ("inactive", None),
]
QUEUES = ["default", "gpu", "cpu"]


def tid(n: int) -> str:
    """The id of sample task ``n`` (created n minutes after T0 - 1 h)."""
    return make_id(T0 - 3600 + n * 60, n)


def sample_tasks(n: int = 24) -> list[dict[str, Any]]:
    tasks = []
    for i in range(n):
        state, exit_status = STATES[i % len(STATES)]
        worker = "w1" if state in ("running", "terminated") else None
        tasks.append(
            task_doc(
                tid(i),
                name=f"train-{i:02d}",
                state=state,
                exit_status=exit_status,
                queue=QUEUES[i % len(QUEUES)],
                worker=worker,
                percent=40.0 if state == "running" else None,
            )
        )
    # A small tree: task 1 (available) → 7 (inactive) → 13 (inactive), and 1 → 19.
    by_id = {t["_id"]: t for t in tasks}
    if n > 19:
        by_id[tid(1)]["continuations"] = [tid(7), tid(19)]
        by_id[tid(7)]["continuations"] = [tid(13)]
        for i in (7, 13, 19):
            by_id[tid(i)]["state"] = "inactive"
            by_id[tid(i)]["execution"] = None
    return tasks


def sample_workers() -> list[dict[str, Any]]:
    running = [{"task": tid(0), "name": "train-00", "state": "running", "attempt": 1}]
    return [
        worker_doc("w1", state="busy", used_cores=3, used_memory=6 * 2**30, running=running),
        worker_doc("w2", age_s=12),
        worker_doc("w3", state="lost", age_s=45),
    ]


async def wait_until(
    pilot: Pilot[Any], condition: Callable[[], Any], timeout: float = 5.0, what: str = ""
) -> None:
    """Let the app run until ``condition()`` holds (AssertionError after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.02)
    # Let pending messages through; a bare pause() would also wait for the CPU to
    # go idle, which costs ~0.4 s after start-up and proves nothing more here.
    await pilot.pause(0)


async def started(pilot: Pilot[Any]) -> BanyanApp:
    """The app once its first snapshot is on screen and the feed is live."""
    app = pilot.app
    assert isinstance(app, BanyanApp)
    await wait_until(pilot, lambda: app.link.live and app.model is not None, what="live")
    await asyncio.sleep(0)
    return app


def text_of(widget: Static) -> str:
    """What a Static shows, as plain text."""
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(widget.content)
    return console.export_text()
