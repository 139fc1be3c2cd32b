"""The TUI against a real server (in process, on a loopback port) and a real
``banyan-worker`` subprocess: submit from the form, watch tasks run and end,
cancel a running one, and see every state change arrive by itself."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from textual.widgets import DataTable, Input, Log

from banyan.client.discovery import Connection
from tests.conftest import Api
from tests.tui.helpers import wait_until
from tui.app import BanyanApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.submit import SubmitScreen
from tui.source import LiveSource
from tui.widgets.tasks import TaskTable

pytestmark = pytest.mark.slow
WORKER = Path(sys.executable).parent / "banyan-worker"


@pytest.fixture
def worker(api: Api, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    url = str(api.client.make_url("")).rstrip("/")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANYAN_")}
    env["BANYAN_CLIENT_FILE"] = str(tmp_path / "no-client.json")
    log = (tmp_path / "worker.log").open("wb")
    command = [str(WORKER), "--server", url, "--token", api.tokens["admin"], "--name", "tui-w"]
    command += ["--cores", "2", "--memory", "1 GiB", "--usage-interval", "0.3"]
    popen = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    yield popen
    kids: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        kids = psutil.Process(popen.pid).children(recursive=True)
    popen.kill()
    popen.wait(timeout=20)
    for kid in kids:  # by PID, only those this worker started
        try:
            kid.kill()
            kid.wait(timeout=5)
        except (psutil.Error, psutil.TimeoutExpired):
            pass
    log.close()


def row_of(table: TaskTable, name: str) -> str | None:
    for key, cells in table._cells.items():
        if name in cells[2]:
            return key
    return None


def state_of(table: TaskTable, name: str) -> str:
    key = row_of(table, name)
    return "" if key is None else str(table.get_cell(key, "state"))


async def submit(app: BanyanApp, pilot: object, *, command: str, name: str) -> None:
    from textual.pilot import Pilot

    assert isinstance(pilot, Pilot)
    await pilot.press("n")
    await wait_until(pilot, lambda: isinstance(app.screen, SubmitScreen))
    app.screen.query_one("#f-command", Input).value = command
    app.screen.query_one("#f-name", Input).value = name
    app.screen.query_one("#f-memory", Input).value = "64 MiB"
    app.screen.query_one("#f-command", Input).focus()
    await pilot.press("enter")
    await wait_until(pilot, lambda: not isinstance(app.screen, SubmitScreen), what="submitted")


async def test_live_server_and_worker(api: Api, worker: subprocess.Popen[bytes]) -> None:
    url = str(api.client.make_url("")).rstrip("/")
    async with LiveSource(Connection(url, api.tokens["admin"])) as source:
        app = BanyanApp(source)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: app.link.live, timeout=10, what="live")
            await pilot.press("2")
            workers = app.query_one("#worker-table", DataTable)
            await wait_until(
                pilot,
                lambda: workers.row_count == 1,
                timeout=15,
                what="the worker",
            )
            await pilot.press("3")
            table = app.query_one(TaskTable)

            await submit(app, pilot, command="sleep 30", name="long-one")
            await wait_until(
                pilot, lambda: "▶" in state_of(table, "long-one"), timeout=15, what="running"
            )
            await submit(app, pilot, command="echo hello-from-tui", name="quick-one")
            await wait_until(
                pilot, lambda: "success" in state_of(table, "quick-one"), timeout=15, what="done"
            )

            # cancel the running one, after the confirmation
            long_id = row_of(table, "long-one")
            assert long_id is not None
            table.move_cursor(row=table.get_row_index(long_id))
            await pilot.press("c")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await wait_until(
                pilot, lambda: "cancelled" in state_of(table, "long-one"), timeout=20, what="cancel"
            )
            assert (await api.task(long_id))["state"] == "cancelled"

            # the detail of the quick one has its log and its attempt
            quick_id = row_of(table, "quick-one")
            assert quick_id is not None
            table.move_cursor(row=table.get_row_index(quick_id))
            await pilot.press("enter")
            log = app.query_one(Log)
            await wait_until(pilot, lambda: "hello-from-tui" in "\n".join(log.lines), timeout=10)
            assert (
                app.detail_view.history and app.detail_view.history[0]["exit_status"] == "success"
            )
            await pilot.press("q")
