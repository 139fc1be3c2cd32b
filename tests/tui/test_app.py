"""Pilot tests of every key path, on the fake source at 80x24."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual import events
from textual.widgets import ContentSwitcher, DataTable, Input, Log, Static, Tree

from tests.tui.helpers import (
    T0,
    sample_tasks,
    sample_workers,
    started,
    text_of,
    tid,
    wait_until,
)
from tui.app import BanyanApp
from tui.fake import FakeSource, task_doc
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.submit import SubmitScreen
from tui.widgets.tasks import TaskTable

SIZE = (80, 24)


def table(app: BanyanApp) -> TaskTable:
    return app.query_one(TaskTable)


def state_cell(app: BanyanApp, task_id: str) -> str:
    return str(table(app).get_cell(task_id, "state"))


def move_cursor_to(app: BanyanApp, task_id: str) -> None:
    table(app).move_cursor(row=table(app).get_row_index(task_id))


async def test_snapshot_then_live_updates_in_place(
    fake: FakeSource, make_app: Callable[..., BanyanApp]
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        t = table(app)
        assert t.row_count == 24
        # newest first
        assert t.cursor_task_id() == tid(23)
        t.move_cursor(row=3)
        under_cursor = t.cursor_task_id()
        fake.push_state(tid(1), "running", worker="w2", attempt=1)
        await wait_until(pilot, lambda: "▶" in state_cell(app, tid(1)))
        assert t.row_count == 24
        assert t.cursor_task_id() == under_cursor  # the cursor stayed put
        # a new task appears on top without moving the cursor off its task
        await fake.submit({"command": "echo", "name": "fresh", "state": "available"})
        await wait_until(pilot, lambda: t.row_count == 25)
        assert t.cursor_task_id() == under_cursor
        assert t.get_row_index(next(reversed(fake.docs))) == 0


async def test_filter_with_slash(fake: FakeSource, make_app: Callable[..., BanyanApp]) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("slash")
        box = app.query_one("#filter", Input)
        assert box.display and box.has_focus
        box.value = "state:fail"
        await pilot.press(*"ed", "enter")
        await wait_until(pilot, lambda: table(app).row_count == 4)
        assert not box.display
        assert all("failed" in state_cell(app, i) for i in app.tasks_view.view.shown)
        # a running task that fails joins the filtered table
        fake.push_state(tid(0), "terminated", exit_status="failure")
        await wait_until(pilot, lambda: table(app).row_count == 5)
        # a bad filter is explained inline and the input stays open
        await pilot.press("slash", "ctrl+a", *"x:y", "enter")
        error = app.query_one("#filter-error", Static)
        assert error.display and "unknown filter field" in text_of(error)
        assert box.display
        await pilot.press("escape")
        assert not box.display and table(app).has_focus


async def test_sort_keys(make_app: Callable[..., BanyanApp]) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("S")  # oldest first
        await wait_until(pilot, lambda: table(app).get_row_index(tid(0)) == 0)
        assert table(app).cursor_task_id() == tid(23)  # the cursor kept its task
        assert table(app).cursor_row == 23
        await pilot.press("s", "s")  # by id, then by name
        assert app.tasks_view.view.sort.key == "name"
        assert table(app).get_row_index(tid(0)) == 0  # train-00 first


async def test_newest_first_is_by_creation_time_not_id(fake: FakeSource) -> None:
    # A client-chosen id sorts after every generated one; the task is the oldest.
    chosen = "aa" * 12
    fake.docs[chosen] = task_doc(chosen, name="chosen-id", created=T0 - 7200)
    app = BanyanApp(fake, clock=lambda: float(T0), clock_format=lambda _: "12:00:00")
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert table(app).get_row_index(tid(23)) == 0  # the newest on top
        assert table(app).get_row_index(chosen) == table(app).row_count - 1
        # One created now, live, with a chosen id: on top, and its age from the event.
        late = "0000000a" + "0" * 16  # its id reads as 1970
        fake.push("task.created", {"_id": late, "name": "late", "state": "available"})
        await wait_until(pilot, lambda: late in table(app).rows)
        assert table(app).get_row_index(late) == 0
        assert table(app).get_cell(late, "age").plain == "0s"
        assert table(app).get_row_index(tid(23)) == 1


async def test_home_and_end_move_the_cursor_in_every_table(
    make_app: Callable[..., BanyanApp],
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        for view, selector in (("3", "#task-table"), ("2", "#worker-table"), ("1", "#queue-table")):
            await pilot.press(view)
            grid = app.query_one(selector, DataTable)
            await wait_until(pilot, lambda grid=grid: grid.row_count > 1)
            await pilot.press("end")
            assert grid.cursor_row == grid.row_count - 1, selector
            await pilot.press("home")
            assert grid.cursor_row == 0, selector


async def test_tree_without_a_task_says_what_to_do(make_app: Callable[..., BanyanApp]) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("1", "4")  # from the Queues view: no task under the cursor
        assert app.view == "tree"
        assert not app.query_one("#task-tree", Tree).display  # no empty tree
        hint = text_of(app.query_one("#tree-note", Static))
        assert "no task selected" in hint and "3" in hint and hint.count("\n") <= 1
        await pilot.press("3", "4")  # with one, its tree
        assert app.query_one("#task-tree", Tree).display
        assert "tree of" in text_of(app.query_one("#tree-note", Static))


async def test_the_sorted_column_is_marked(make_app: Callable[..., BanyanApp]) -> None:
    app = make_app()
    async with app.run_test(size=(120, 24)) as pilot:
        await started(pilot)

        def labels() -> dict[str, str]:
            return {str(k.value): c.label.plain for k, c in table(app).columns.items()}

        assert labels()["age"] == "AGE▲"  # newest first: the youngest age on top
        assert labels()["name"] == "NAME"
        await pilot.press("s", "s")  # by id, then by name (ascending)
        assert labels()["name"] == "NAME▲" and labels()["id"] == "ID"
        assert labels()["age"] == "AGE"
        await pilot.press("S")
        assert labels()["name"] == "NAME▼"
        await pilot.press("s", "s", "s", "s")  # state, queue, priority, updated
        assert app.tasks_view.view.sort.text == "-updated"
        assert not any(label.endswith(("▲", "▼")) for label in labels().values())
        assert "sorted -updated" in text_of(app.query_one("#tasks-note", Static))


async def test_running_tasks_show_a_live_elapsed_time(
    fake: FakeSource, make_app: Callable[..., BanyanApp]
) -> None:
    now = [float(T0)]
    app = make_app(clock=lambda: now[0])
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)

        def ran(task_id: str) -> str:
            return str(table(app).get_cell(task_id, "ran").plain)

        assert ran(tid(18)) == "41:59"  # running: started at T0 - 2519 s
        assert ran(tid(20)) == "0:04"  # ended: its run time, fixed
        assert ran(tid(23)) == ""  # never ran
        calls = len(fake.calls)
        now[0] += 5
        await wait_until(pilot, lambda: ran(tid(18)) == "42:04", what="the clock to tick")
        assert ran(tid(20)) == "0:04"
        assert fake.calls[calls:] == []  # the tick is the clock alone: no request
        table(app).move_cursor(row=table(app).get_row_index(tid(18)))
        await pilot.press("enter")  # the detail of the running task
        fields = app.query_one("#detail-fields", Static)
        await wait_until(pilot, lambda: "running for 42:04" in text_of(fields))
        now[0] += 60
        await wait_until(pilot, lambda: "running for 43:04" in text_of(fields))


async def test_number_keys_and_command_line(make_app: Callable[..., BanyanApp]) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        for key, view in (("1", "queues"), ("2", "workers"), ("3", "tasks")):
            await pilot.press(key)
            assert app.view == view
            assert app.query_one("#views", ContentSwitcher).current == view
        await pilot.press("colon", *"wk", "enter")
        assert app.view == "workers"
        command = app.query_one("#command", Input)
        await pilot.press("colon")
        command.value = "sort name"  # typing is tested above; presses are slow
        await pilot.press("enter")
        assert app.tasks_view.view.sort.text == "name" and app.view == "workers"
        await pilot.press("colon", "t", "enter")
        assert app.view == "tasks"
        await pilot.press("colon", "z", "enter")
        assert app.view == "tasks" and not command.display  # an error toast, nothing else
        await pilot.press("colon", "q", "enter")
        await pilot.pause()
    assert app.return_code == 0


async def test_queues_view_counts(make_app: Callable[..., BanyanApp]) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("1")
        queues = app.query_one("#queue-table", DataTable)
        assert queues.row_count == 3
        assert "finished 1m" in text_of(app.query_one("#queues-note", Static))
        await pilot.press("enter")  # the first queue (cpu): its tasks
        await wait_until(pilot, lambda: app.view == "tasks")
        assert app.tasks_view.view.filter.text == "queue:cpu"
        assert table(app).row_count == 8
        await pilot.press("q")
    assert app.return_code == 0


async def test_queues_header_agrees_with_the_done_column(
    fake: FakeSource, make_app: Callable[..., BanyanApp]
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("1")
        for i in (1, 5, 7):  # three tasks end in the last minute, in two queues
            fake.push_state(tid(i), "terminated", exit_status="success")
        queues = app.query_one("#queue-table", DataTable)

        def column() -> int:
            return sum(int(queues.get_cell(q, "done_1m").plain) for q in ("cpu", "gpu"))

        await wait_until(pilot, lambda: column() == 3)
        note = app.query_one("#queues-note", Static)
        await wait_until(pilot, lambda: "finished 1m ≥3 " in text_of(note), what=text_of(note))


async def test_workers_view_shows_measured_cpu_and_memory(
    fake: FakeSource, make_app: Callable[..., BanyanApp]
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("2")
        workers = app.query_one("#worker-table", DataTable)
        assert workers.get_cell("w1", "rss").plain == "-"  # no sample yet
        for n, mib, cpu in ((0, 3, 150.0), (6, 5, 50.0)):  # two tasks running on w1
            sample = {"_id": tid(n), "time": T0, "resident_memory_bytes": mib * 2**20}
            fake.push("task.usage", {**sample, "cpu_percent": cpu})
        await wait_until(pilot, lambda: workers.get_cell("w1", "rss").plain == "8M")
        assert workers.get_cell("w1", "cpu").plain == "200"  # two cores' worth, as htop
        assert workers.get_cell("w2", "rss").plain == "-"  # runs nothing
        assert "measured" in text_of(app.query_one("#workers-note", Static))
        fake.push_state(tid(6), "terminated", exit_status="success")
        await wait_until(pilot, lambda: workers.get_cell("w1", "rss").plain == "3M")
        assert workers.get_cell("w1", "cpu").plain == "150"


async def test_workers_view_heartbeats_and_lost(
    fake: FakeSource, make_app: Callable[..., BanyanApp]
) -> None:
    now = [float(T0)]
    app = make_app(clock=lambda: now[0])
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("2")
        workers = app.query_one("#worker-table", DataTable)
        seen = workers.get_cell("w2", "heartbeat")
        assert seen.plain == "12s" and seen.style == "yellow"
        assert workers.get_cell("w3", "heartbeat").style == "bold red"
        assert workers.get_cell("w1", "heartbeat").style == ""
        # ages come from timestamps: a second later, a second older
        now[0] += 2
        await wait_until(pilot, lambda: workers.get_cell("w1", "heartbeat").plain == "3s")
        fake.push("worker.heartbeat", {"name": "w1", "worker": "w1"}, timestamp=now[0])
        await wait_until(pilot, lambda: workers.get_cell("w1", "heartbeat").plain == "0s")
        fake.push("worker.lost", {"name": "w1", "abandoned": []}, timestamp=now[0])
        await wait_until(pilot, lambda: workers.get_cell("w1", "state").plain == "lost")
        assert "3/4" in workers.get_cell("w1", "cores").plain


async def test_multi_select_and_cancel_confirmation(
    fake: FakeSource, make_app: Callable[..., BanyanApp]
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        move_cursor_to(app, tid(19))
        await pilot.press("space")  # tid(19), waiting, selected; the cursor moves down
        assert table(app).cursor_task_id() == tid(18)
        await pilot.press("space")  # tid(18): running
        await pilot.press("down")  # tid(16): cancelled already
        await pilot.press("space")
        assert table(app).selected == {tid(19), tid(18), tid(16)}
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        details = text_of(app.screen.query_one("#confirm-details", Static))
        question = text_of(app.screen.query_one("#confirm-question", Static))
        assert "Cancel 2 tasks?" in question  # the finished one is left out
        assert "train-19" in details and "train-18" in details and "train-16" not in details
        # "no" changes nothing
        await pilot.press("n")
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        assert not [c for c in fake.calls if c[0] == "cancel"]
        await pilot.press("c", "y")
        await wait_until(pilot, lambda: ("cancel", (tid(19), tid(18))) in fake.calls)
        await wait_until(pilot, lambda: "cancelled" in state_cell(app, tid(19)))
        assert "cancelling" in state_cell(app, tid(18))
        assert table(app).selected == {tid(16)}


async def test_cancel_disabled_for_finished_task(
    fake: FakeSource, make_app: Callable[..., BanyanApp]
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        move_cursor_to(app, tid(2))  # succeeded
        await pilot.pause()
        assert app.check_action("cancel", ()) is None
        await pilot.press("c")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert app.check_action("retry", ()) is None  # a success is not retried
        move_cursor_to(app, tid(3))  # failed
        await pilot.pause()
        assert app.check_action("retry", ()) is True
        await pilot.press("r")
        await wait_until(pilot, lambda: ("retry", (tid(3),)) in fake.calls)
        await wait_until(pilot, lambda: "available" in state_cell(app, tid(3)))


async def test_cancel_tree(fake: FakeSource, make_app: Callable[..., BanyanApp]) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        move_cursor_to(app, tid(1))
        await pilot.press("C")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        question = text_of(app.screen.query_one("#confirm-question", Static))
        assert "4 unfinished" in question
        await pilot.press("y")
        await wait_until(pilot, lambda: ("cancel_tree", tid(1)) in fake.calls)
        await wait_until(pilot, lambda: "cancelled" in state_cell(app, tid(13)))


async def test_tree_view(fake: FakeSource, make_app: Callable[..., BanyanApp]) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        move_cursor_to(app, tid(7))  # in the middle of the tree: shown from its root
        await pilot.press("4")
        await wait_until(pilot, lambda: bool(app.query("#task-tree")))  # mounted, even under load
        tree = app.query_one("#task-tree", Tree)
        assert tree.root.data == tid(1)
        assert "0/4 done" in str(tree.root.label)
        assert tree.cursor_node is not None and tree.cursor_node.data == tid(7)
        fake.push_state(tid(1), "running", worker="w1", attempt=1)
        await wait_until(pilot, lambda: "1 running" in str(tree.root.label))
        fake.push_state(tid(1), "terminated", exit_status="success")
        await wait_until(pilot, lambda: "1/4 done" in str(tree.root.label))
        await pilot.press("enter")  # the node under the cursor, in detail
        await wait_until(pilot, lambda: app.view == "detail")
        assert app.detail_view.task_id == tid(7)
        await pilot.press("escape")
        assert app.view == "tree"


async def test_detail_view_follows_log_and_rss(
    fake: FakeSource, make_app: Callable[..., BanyanApp]
) -> None:
    fake.log_text[tid(0)] = "epoch 1\n"
    fake.histories[tid(0)] = [
        {"attempt": 1, "worker": "w1", "exit_status": "failure", "exit_code": 3},
        {"attempt": 2, "worker": "w1", "exit_status": None},
    ]
    fake.usage_docs[tid(0)] = [{"time": T0 - 10, "resident_memory_bytes": 2**20}]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        move_cursor_to(app, tid(0))
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.view == "detail")
        log = app.query_one(Log)
        await wait_until(pilot, lambda: "epoch 1" in "\n".join(log.lines))
        history = text_of(app.query_one("#detail-history", Static))
        assert "failure (3)" in history and "running" in history
        fake.log_text[tid(0)] += "epoch 2\n"  # refreshed while it runs
        await wait_until(pilot, lambda: "epoch 2" in "\n".join(log.lines), timeout=5)
        fake.push("task.usage", {"_id": tid(0), "time": T0, "resident_memory_bytes": 3 * 2**20})
        label = app.query_one("#detail-rss-label", Static)
        await wait_until(pilot, lambda: "peak 3 MiB" in text_of(label))
        fake.push("task.progress", {"_id": tid(0), "percent": 75.0})
        await wait_until(pilot, lambda: "75%" in state_cell(app, tid(0)))


async def test_submit_form_validates_inline(
    fake: FakeSource, make_app: Callable[..., BanyanApp]
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, SubmitScreen))
        screen = app.screen
        screen.query_one("#f-memory", Input).value = "12 XB"
        screen.query_one("#f-priority", Input).value = "high"
        await pilot.press("enter")
        await pilot.pause()
        assert "a command is required" in text_of(screen.query_one("#e-command", Static))
        assert "invalid memory" in text_of(screen.query_one("#e-memory", Static))
        assert "valid integer" in text_of(screen.query_one("#e-priority", Static))
        assert not [c for c in fake.calls if c[0] == "submit"]
        screen.query_one("#f-command", Input).value = "python train.py"
        screen.query_one("#f-name", Input).value = "from-the-form"
        screen.query_one("#f-memory", Input).value = "2 GiB"
        screen.query_one("#f-priority", Input).value = "5"
        screen.query_one("#f-after", Input).value = tid(1)[-8:]  # a short id
        screen.query_one("#f-command", Input).focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, SubmitScreen))
        (_, body, after), *_ = [c for c in fake.calls if c[0] == "submit"]
        assert body["command"] == "python train.py" and body["priority"] == 5
        assert body["requested_resources"]["memory"] == 2 * 2**30
        assert after == (tid(1),)
        await wait_until(pilot, lambda: table(app).row_count == 25)


async def test_submit_form_time_limit_and_begin(
    fake: FakeSource, make_app: Callable[..., BanyanApp]
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, SubmitScreen))
        screen = app.screen
        screen.query_one("#f-command", Input).value = "./nightly.sh"
        screen.query_one("#f-time_limit", Input).value = "an hour or so"
        screen.query_one("#f-begin", Input).value = "next tuesday"
        screen.query_one("#f-command", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert "invalid duration" in text_of(screen.query_one("#e-time_limit", Static))
        assert "invalid begin time" in text_of(screen.query_one("#e-begin", Static))
        assert not [c for c in fake.calls if c[0] == "submit"]
        screen.query_one("#f-time_limit", Input).value = "10 minutes"
        screen.query_one("#f-begin", Input).value = "now+1hour"
        before = time.time()
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, SubmitScreen))
        after = time.time()
        (_, body, _), *_ = [c for c in fake.calls if c[0] == "submit"]
        assert body["command"] == "./nightly.sh" and body["time_limit"] == 600
        assert before + 3600 <= body["not_before"] <= after + 3600


def type_fast(app: BanyanApp, text: str) -> None:
    """Key events for ``text`` ("\t" is Tab) sent all at once, as a terminal delivers
    fast typing or a paste, where ``pilot.press`` waits for the app between keys."""
    driver = app._driver
    assert driver is not None
    for char in text:
        key = {"\t": "tab", " ": "space"}.get(char, char)
        event = events.Key(key, char)
        event.set_sender(app)
        driver.send_message(event)


async def test_submit_form_keeps_fast_tabs(make_app: Callable[..., BanyanApp]) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, SubmitScreen))
        screen = app.screen
        type_fast(app, "sleep 100\ttui job\t1\t1 GB")
        fields = {k: screen.query_one(f"#f-{k}", Input) for k in ("command", "name", "memory")}
        await wait_until(pilot, lambda: fields["memory"].value == "1 GB", what="all keys")
        assert fields["command"].value == "sleep 100"
        assert fields["name"].value == "tui job"
        assert screen.query_one("#f-cores", Input).value == "1"


async def test_help_and_palette(make_app: Callable[..., BanyanApp]) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, HelpScreen))
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: app.screen.__class__.__name__ == "CommandPalette")
        await pilot.press(*"work")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.view == "workers")


async def test_read_only_hides_every_mutating_key(
    fake: FakeSource, make_app: Callable[..., BanyanApp]
) -> None:
    app = make_app(read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        move_cursor_to(app, tid(0))  # running: cancellable if not read-only
        await pilot.pause()
        shown = {b.binding.key for b in app.screen.active_bindings.values() if b.enabled}
        assert not shown & {"n", "c", "C", "r"}
        for action in ("submit", "cancel", "cancel_tree", "retry"):
            assert app.check_action(action, ()) is False
        await pilot.press("n", "c", "C", "r")
        await pilot.pause()
        assert isinstance(app.screen, type(app.screen)) and not isinstance(
            app.screen, SubmitScreen | ConfirmScreen
        )
        assert [c for c in fake.calls if c[0] != "snapshot" and c[0] != "logs"] == []
        assert "read-only" in text_of(app.query_one("#status", Static))


async def test_reconnect_resumes_with_since_and_marks_stale(
    fake: FakeSource, make_app: Callable[..., BanyanApp]
) -> None:
    now = [float(T0)]
    app = make_app(clock=lambda: now[0])
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        fake.push_state(tid(1), "running", worker="w1", attempt=1)
        await wait_until(pilot, lambda: app.received_seq == fake.seq)
        seq = fake.seq
        status = app.query_one("#status", Static)
        assert "● live" in text_of(status)
        fake.refuse_connections = True
        fake.disconnect()
        await wait_until(pilot, lambda: not app.link.live)
        assert "reconnecting" in text_of(status)
        assert app.query_one("#views").has_class("-stale")
        now[0] += 10
        await wait_until(pilot, lambda: "stale since 12:00:00" in text_of(status))
        # what happened meanwhile arrives on reconnect, resumed from the last seq
        fake.push_state(tid(1), "terminated", exit_status="success")
        fake.refuse_connections = False
        await wait_until(pilot, lambda: app.link.live, timeout=10)
        assert fake.since_asked[-1] == seq
        await wait_until(pilot, lambda: "success" in state_cell(app, tid(1)))
        assert not app.query_one("#views").has_class("-stale")
        assert [c for c in fake.calls if c[0] == "snapshot"] == [("snapshot",)]


async def test_resync_reloads_the_snapshot(
    fake: FakeSource, make_app: Callable[..., BanyanApp]
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        fake.keep_frames = False
        fake.docs[tid(5)]["state"] = "cancelled"  # changed while we were not told
        fake.resync()
        await wait_until(pilot, lambda: len([c for c in fake.calls if c[0] == "snapshot"]) == 2)
        await wait_until(pilot, lambda: "cancelled" in state_cell(app, tid(5)))
        assert app.link.live
        # a server with a new database (its seq went back): everything reloads
        fake.push_state(tid(0), "pending_cancellation")
        await wait_until(pilot, lambda: app.received_seq == fake.seq)
        fake.seq = 0
        fake.docs[tid(0)]["state"] = "cancelled"
        fake.disconnect()
        await wait_until(pilot, lambda: len([c for c in fake.calls if c[0] == "snapshot"]) == 3)
        await wait_until(pilot, lambda: "cancelled" in state_cell(app, tid(0)) and app.link.live)
        assert app.received_seq == 0


async def test_without_stats_endpoint_counts_from_tasks(
    make_app: Callable[..., BanyanApp],
) -> None:
    source = FakeSource(sample_tasks(), sample_workers(), stats_supported=False)
    app = make_app(source=source)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("1")
        note = text_of(app.query_one("#queues-note", Static))
        assert "no /stats" in note
        assert app.query_one("#queue-table", DataTable).row_count == 3


async def test_remove_rows_matches_remove_row() -> None:
    """``TaskTable.remove_rows`` mirrors DataTable internals (Textual is pinned)."""
    from textual.app import App, ComposeResult

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield TaskTable()

    app = One()
    async with app.run_test(size=SIZE) as pilot:
        t = app.query_one(TaskTable)
        t.add_column("id", key="id")
        for i in range(10):
            t.add_row(str(i), key=f"k{i}")
        t.move_cursor(row=8)
        await pilot.pause()
        t.remove_rows(["k1", "k4", "k5", "nope"])
        await pilot.pause()
        assert [str(r.key.value) for r in t.ordered_rows] == [
            f"k{i}" for i in (0, 2, 3, 6, 7, 8, 9)
        ]
        assert t.get_row_index("k8") == 5 and t.row_count == 7
        assert [str(c) for c in t.get_column("id")] == ["0", "2", "3", "6", "7", "8", "9"]
        t.remove_rows(["k9"])  # one row: DataTable's own remove_row
        t.remove_rows(["k0", "k2", "k3", "k6", "k7", "k8"])
        await pilot.pause()
        assert t.row_count == 0 and t.cursor_task_id() is None
