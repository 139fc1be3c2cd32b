"""The Jobs view and the pending reasons in the TUI: the pure reducer
(``tui.state.job_rows``, ``task_from_doc``), the detail's reason row, and
Pilot on the fake source (the Jobs view's rows, the Tasks view's
WORKER/REASON cell)."""

from __future__ import annotations

from typing import Any, cast

from rich.console import Console
from textual.widgets import DataTable

from banyan.client.discovery import Connection
from tests.conftest import Api
from tests.tui.helpers import T0, started, wait_until
from tui.app import BanyanApp
from tui.fake import FakeSource, make_id, task_doc, worker_doc
from tui.source import LiveSource
from tui.state import Model, Task, job_rows, task_from_doc
from tui.widgets.detail import fields_table
from tui.widgets.jobs import JobsView

HELD = "held: make it available to run"


def _docs() -> list[Any]:
    first, second, third = (make_id(T0 - 60, i) for i in range(3))
    alone = make_id(T0 - 30, 9)
    docs: list[Any] = [
        task_doc(first, name="sweep[1]", state="terminated", exit_status="success"),
        task_doc(second, name="sweep[2]", state="running", worker="w1"),
        task_doc(third, name="sweep[3]", state="terminated", exit_status="failure"),
        task_doc(alone, name="alone", state="inactive"),
    ]
    for doc in docs[:3]:
        doc["job"] = first
    docs[3]["job"] = alone
    docs[3]["_pending_reason"] = {"code": "held", "reason": HELD}
    return docs


def test_job_rows_group_tasks_by_job_with_counts_and_span() -> None:
    tasks = [task_from_doc(d) for d in _docs()]
    sweep, alone = sorted(job_rows(tasks), key=lambda r: r.name, reverse=True)
    assert sweep.name == "sweep[1]" and sweep.owner == "admin"
    assert sweep.counts == {"success": 1, "running": 1, "failed": 1} and sweep.total == 3
    assert not sweep.done and sweep.span_s(sweep.started + 100) == 100  # type: ignore[operator]
    assert alone.counts == {"inactive": 1} and alone.span_s(T0) is None
    ended = [Task(id="a" * 24, job="a" * 24, state="terminated", started=10.0, ended=30.0)]
    (row,) = job_rows(ended)
    assert row.done and row.span_s(1e9) == 20.0
    assert job_rows([Task(id="b" * 24)]) == []  # a task of no job (an old server)
    (named,) = job_rows(ended, {"a" * 24: "given"})
    assert named.name == "given"


def test_task_from_doc_keeps_the_job_and_the_reason() -> None:
    alone = task_from_doc(_docs()[3])
    assert alone.job == alone.id and alone.reason == HELD


def test_model_asks_for_the_newest_waiting_tasks_and_keeps_their_reasons() -> None:
    docs = _docs()
    model = Model.from_snapshot(docs, [], None, now=T0)
    alone = docs[3]["_id"]
    assert model.waiting_ids(10) == [alone]
    assert model.set_reasons([alone], {alone: "x"}) == {alone}
    assert model.set_reasons([alone], {alone: "x"}) == set()
    assert model.set_reasons([alone], {}) == {alone} and model.tasks[alone].reason is None


def test_detail_names_the_reason_of_a_task_that_is_not_running() -> None:
    doc = _docs()[3]
    console = Console(width=120, record=True)
    console.print(fields_table(task_from_doc(doc), doc, T0))
    assert f"reason    {HELD}" in console.export_text()
    running = _docs()[1]
    console = Console(width=120, record=True)
    console.print(fields_table(task_from_doc(running), running, T0))
    assert "reason" not in console.export_text()


async def test_jobs_view_and_the_reason_column_on_the_fake_source() -> None:
    fake = FakeSource(_docs(), [worker_doc("w1")], clock=lambda: float(T0))
    fake.job_names[_docs()[0]["_id"]] = "the sweep"
    app = BanyanApp(fake, clock=lambda: float(T0), clock_format=lambda _: "12:00:00")
    async with app.run_test(size=(200, 30)) as pilot:
        await started(pilot)
        await pilot.press("6")
        await pilot.pause()
        view = app.query_one(JobsView)
        table = view.query_one(DataTable)
        await wait_until(pilot, lambda: table.row_count == 2, what="two jobs")
        first = _docs()[0]["_id"]
        cells = [str(c) for c in table.get_row(first)]
        assert cells[1] == "the sweep" and cells[2] == "admin"
        assert cells[3:9] == ["3", "0", "1", "1", "1", "0"]
        await pilot.press("3")
        await pilot.pause()
        tasks_table = app.query_one("#task-table", DataTable)
        alone = _docs()[3]["_id"]
        row = [str(c) for c in tasks_table.get_row(alone)]
        assert "(held: make it available to…" in row, row
        running = [str(c) for c in tasks_table.get_row(_docs()[1]["_id"])]
        assert "w1" in running
        # Reasons change with the workers: the app asks again for the waiting tasks.
        fake.reasons[alone] = "no connected worker serves queue 'default'"
        app._fetch_reasons()

        def shown() -> bool:
            return "(no connected worker serves…" in [str(c) for c in tasks_table.get_row(alone)]

        await wait_until(pilot, shown, what="the new reason")
        assert ("pending_reasons", alone) in fake.calls


async def test_live_source_reads_job_names_and_reasons_from_a_real_server(api: Api) -> None:
    resp = await api.post(
        "/tasks", [{"command": "x", "name": "a"}] * 2, params={"job_name": "the batch"}
    )
    job = resp.body["job"]
    held = resp.body["_items"][1]["_id"]
    url = str(api.client.make_url("")).rstrip("/")
    async with LiveSource(Connection(url, api.tokens["admin"])) as source:
        snap = await source.snapshot()
        assert snap.job_names == {job: "the batch"}
        loaded = {d["_id"]: task_from_doc(d) for d in snap.tasks}
        assert loaded[held].job == job and loaded[held].reason == HELD
        assert await source.pending_reasons([held]) == {held: HELD}
        doc = await source.task(held)
        assert cast(dict[str, Any], doc)["_pending_reason"]["code"] == "held"
