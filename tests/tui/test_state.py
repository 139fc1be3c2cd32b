"""The TUI's pure state: filter language, sorting, the table's row plans,
trees, state → glyph/style, and events applied to the model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.tui.helpers import T0, sample_tasks, sample_workers, tid
from tui.fake import complete, task_doc
from tui.forms import build_submission
from tui.state import (
    STATUS_LOOK,
    Changes,
    FilterError,
    Link,
    Model,
    RateMeter,
    Sort,
    Task,
    TaskView,
    Worker,
    bar,
    build_tree,
    clock_text,
    descendants,
    heartbeat_level,
    load_style,
    look,
    matches,
    parse_command,
    parse_filter,
    parse_sort,
    queue_rows,
    rate_text,
    readable,
    run_time,
    short_age,
    sort_key,
    status_of,
    subtree_summary,
    tree_root,
)
from tui.views import VIEW_COMMANDS


def model(n: int = 24, stats: dict[str, Any] | None = None) -> Model:
    return Model.from_snapshot(sample_tasks(n), sample_workers(), stats, now=T0)


def frame(kind: str, data: dict[str, Any], ts: float = T0, seq: int = 1) -> dict[str, Any]:
    """A feed frame as the server sends it (what ``data`` leaves out filled in)."""
    return {"seq": seq, "type": kind, "timestamp": ts, "time": "", "data": complete(kind, data)}


def apply(m: Model, frames: list[dict[str, Any]]) -> Changes:
    """What the live app does with a batch of frames: decode, then reduce."""
    return m.apply(e for e in map(readable, frames) if e is not None)


# --- state → glyph and style ---------------------------------------------------


def test_every_state_has_its_own_glyph_and_colour() -> None:
    glyphs = {glyph for glyph, _, _ in STATUS_LOOK.values()}
    styles = {style for _, _, style in STATUS_LOOK.values()}
    assert len(glyphs) == len(STATUS_LOOK) == len(styles)
    assert status_of("terminated", "success") == "success"
    assert status_of("terminated", "failure (SIGKILL)") == "failed"
    assert status_of("terminated", "abandoned (worker unreachable)") == "failed"
    assert status_of("pending_cancellation") == "cancelling"
    assert look("failed") == ("✘", "failed", "bold red")
    assert look("success")[0] == "✔"


def test_load_colours_and_bars() -> None:
    assert [load_style(f) for f in (0.0, 0.69, 0.7, 0.89, 0.9, 1.0)] == [
        "green",
        "green",
        "yellow",
        "yellow",
        "red",
        "red",
    ]
    assert bar(0.5, 4) == "██  "
    assert bar(1.0, 3) == "███"
    assert bar(0.0, 3) == "   "
    assert len(bar(0.37, 6)) == 6


def test_heartbeat_levels() -> None:
    worker = Worker("w", state="idle", last_heartbeat=T0 - 4)
    assert heartbeat_level(worker, T0, 5.0) == "ok"
    worker.last_heartbeat = T0 - 8
    assert heartbeat_level(worker, T0, 5.0) == "warn"
    worker.state = "lost"
    assert heartbeat_level(worker, T0, 5.0) == "error"


def test_short_age() -> None:
    assert [short_age(s) for s in (None, 0, 59, 60, 3600, 90_000)] == [
        "-",
        "0s",
        "59s",
        "1m",
        "1h",
        "1d",
    ]


# --- filters and sorting -------------------------------------------------------


def test_parse_filter_and_match() -> None:
    flt = parse_filter("state:running queue:gpu name~train")
    assert [(t.field, t.op, t.values) for t in flt.terms] == [
        ("state", ":", ("running",)),
        ("queue", ":", ("gpu",)),
        ("name", "~", ("train",)),
    ]
    task = Task("a" * 24, name="Train-big", state="running", queue="gpu")
    assert matches(flt, task)
    assert not matches(flt, Task("b" * 24, name="train", state="running", queue="cpu"))
    assert matches(parse_filter(""), task) and not parse_filter("")


@pytest.mark.parametrize(
    ("text", "status", "expected"),
    [
        ("state:terminated", "success", True),
        ("state:terminated", "failed", True),
        ("state:failed", "success", False),
        ("state:running,failed", "failed", True),
        ("state:active", "cancelling", True),
        ("state:waiting", "inactive", True),
        ("-state:success", "success", False),
        ("-state:success", "failed", True),
        ("s:ended", "cancelled", True),
    ],
)
def test_state_aliases(text: str, status: str, expected: bool) -> None:
    states = {
        "success": ("terminated", "success"),
        "failed": ("terminated", "failure"),
        "cancelling": ("pending_cancellation", None),
        "inactive": ("inactive", None),
        "cancelled": ("cancelled", None),
    }
    state, exit_status = states[status]
    task = Task("c" * 24, state=state, exit_status=exit_status)
    assert matches(parse_filter(text), task) is expected


def test_bare_words_ids_and_exact_names() -> None:
    task = Task("6650f0c2a1b2c3d4e5f60718", name="nightly", command="./run.sh --fast")
    assert matches(parse_filter("run.sh"), task)
    assert matches(parse_filter("name:nightly"), task)
    assert not matches(parse_filter("name:night"), task)
    assert matches(parse_filter("id:6650f0c2"), task) and matches(parse_filter("id:e5f60718"), task)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour:red", "unknown filter field 'colour'"),
        ("state:sleeping", "unknown state 'sleeping'"),
        ("state:", "needs a value"),
        ("state~run", "takes ':'"),
    ],
)
def test_filter_errors_say_why(text: str, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        parse_filter(text)


def test_sorting() -> None:
    tasks = [
        Task("000000000000000000000002", name="b", state="terminated", priority=1, updated=3),
        Task("000000000000000000000001", name="a", state="running", priority=5, updated=9),
        Task("000000000000000000000003", name="C", state="available", priority=1, updated=1),
    ]
    for created, task in enumerate(tasks):
        task.created = float(created)

    def order(sort: Sort) -> list[str]:
        ranked = sorted(tasks, key=sort_key(sort), reverse=sort.descending)
        return [t.name or "" for t in ranked]

    assert order(parse_sort("-id")) == ["C", "b", "a"]
    assert order(parse_sort("-created")) == ["C", "a", "b"]
    assert order(parse_sort("age")) == ["C", "a", "b"]  # youngest first: by creation time
    assert Sort() == parse_sort("-created")  # "newest" is the default
    assert order(parse_sort("name")) == ["a", "b", "C"]
    assert order(parse_sort("state")) == ["a", "C", "b"]  # running, available, success
    assert order(parse_sort("-priority")) == ["a", "C", "b"]  # ties by id, descending
    assert order(parse_sort("-updated")) == ["a", "b", "C"]
    with pytest.raises(FilterError, match="cannot sort by 'colour'"):
        parse_sort("colour")


# --- events applied to the model ---------------------------------------------


def test_snapshot_model() -> None:
    m = model(stats={"tasks": {"total": 50, "by_queue": {"gpu": {"available": 3}}}})
    assert len(m.tasks) == 24 and m.server_total == 50
    assert m.counts_from_server and m.queue_counts == {"gpu": {"available": 3}}
    task = m.tasks[tid(0)]
    assert task.state == "running" and task.worker == "w1" and task.percent == 40.0
    assert task.created == T0 - 3600
    assert m.workers["w2"].last_heartbeat == T0 - 12
    assert m.active == {tid(i) for i in range(24) if i % 6 == 0}
    assert m.parents[tid(7)] == {tid(1)}


def test_state_events_change_tasks_and_counts() -> None:
    m = model()
    before = m.queue_counts["gpu"]["available"]
    running = {"_id": tid(1), "state": "running", "previous": "available", "queue": "gpu"}
    changes = apply(m, [frame("task.state", running, ts=T0 + 1, seq=7)])
    assert changes.tasks == {tid(1)} and changes.workers_stale and m.seq == 7
    assert m.tasks[tid(1)].state == "running" and tid(1) in m.active
    assert m.queue_counts["gpu"]["available"] == before - 1
    failed = {"_id": tid(1), "state": "terminated", "previous": "running", "queue": "gpu"}
    failed["exit_status"] = "failure"
    apply(m, [frame("task.state", failed, ts=T0 + 2)])
    task = m.tasks[tid(1)]
    assert task.status == "failed" and task.ended == T0 + 2 and tid(1) not in m.active
    assert m.done_last_minute("gpu", T0 + 3) == 1
    assert m.queue_counts["gpu"]["running"] == 0


def test_retry_progress_usage_and_created() -> None:
    m = model()
    apply(
        m,
        [
            frame(
                "task.state",
                {"_id": tid(3), "state": "available", "previous": "terminated", "retry": True},
            ),
            frame("task.progress", {"_id": tid(0), "percent": 80, "message": "epoch 8"}),
            frame("task.usage", {"_id": tid(0), "time": T0, "resident_memory_bytes": 5}),
            frame(
                "task.created", {"_id": "f" * 24, "name": "new", "state": "available", "queue": "x"}
            ),
        ],
    )
    assert m.tasks[tid(3)].retry_count == 1 and m.tasks[tid(3)].state == "available"
    assert m.tasks[tid(0)].percent == 80.0 and m.tasks[tid(0)].message == "epoch 8"
    assert list(m.usage[tid(0)]) == [(T0, 5)]
    assert m.tasks["f" * 24].queue == "x" and m.queue_counts["x"] == {"available": 1}


def test_replayed_events_older_than_the_snapshot_are_ignored() -> None:
    doc = task_doc(tid(1), state="terminated", exit_status="success", created=T0 - 100)
    doc["_updated"] = "Fri, 15 Jan 2027 08:01:00 GMT"  # a minute after T0
    m = Model.from_snapshot([doc], [], None, now=T0)
    apply(m, [frame("task.state", {"_id": tid(1), "state": "running", "previous": "available"})])
    assert m.tasks[tid(1)].status == "success"


def test_unknown_task_gets_a_row_and_bad_frames_are_skipped() -> None:
    m = model()
    changes = apply(
        m,
        [
            frame("task.state", {"_id": "e" * 24, "state": "running", "previous": "available"}),
            {"seq": 2, "type": "task.state", "data": {"state": "running"}},  # no id
            frame("task.someday", {"_id": "e" * 24}),
            {"type": "feed.resync"},
        ],
    )
    assert changes.applied == 1 and m.tasks["e" * 24].state == "running"


def test_worker_events() -> None:
    m = model()
    apply(m, [frame("worker.heartbeat", {"name": "w2"}, ts=T0 + 5)])
    assert m.workers["w2"].last_heartbeat == T0 + 5
    changes = apply(m, [frame("worker.lost", {"name": "w1", "abandoned": []})])
    assert m.workers["w1"].state == "lost" and changes.workers_stale
    apply(m, [frame("worker.joined", {"name": "w9", "capacity": {"cores": 2}, "queues": ["a"]})])
    assert m.workers["w9"].state == "idle" and m.workers["w9"].capacity == {"cores": 2}
    assert [t.id for t in m.running_on("w1")] == [tid(i) for i in (0, 6, 12, 18)]


def test_queue_rows_from_loaded_tasks() -> None:
    m = model()  # no stats: counted from the tasks
    rows = {r.name: r for r in queue_rows(m, T0)}
    assert set(rows) == {"default", "gpu", "cpu"}
    gpu = rows["gpu"]
    assert (gpu.available, gpu.waiting) == (1, 3)  # tid(7), 13 and 19 wait on tid(1)
    assert gpu.oldest_waiting_s == pytest.approx(3600 - 60)  # tid(1), an hour ago less a minute


# --- the table's rows ---------------------------------------------------------


def test_task_view_limit_and_new_rows_on_top() -> None:
    m = model()
    view = TaskView(limit=5)
    plan = view.reset(m)
    assert plan.reset and view.shown == [tid(i) for i in (23, 22, 21, 20, 19)]
    assert len(view.matching) == 24
    apply(m, [frame("task.created", {"_id": "f" * 24, "state": "available"})])
    plan = view.changed(m, {"f" * 24})
    assert plan.add == ["f" * 24] and plan.remove == [tid(19)]
    assert plan.order == ["f" * 24, *[tid(i) for i in (23, 22, 21, 20)]]


def test_task_view_filter_leaves_and_refills() -> None:
    m = model()
    view = TaskView(limit=2)
    view.filter = parse_filter("state:running")
    view.reset(m)
    assert view.shown == [tid(18), tid(12)] and len(view.matching) == 4
    apply(
        m,
        [
            frame(
                "task.state",
                {
                    "_id": tid(18),
                    "state": "terminated",
                    "previous": "running",
                    "exit_status": "success",
                },
            )
        ],
    )
    plan = view.changed(m, {tid(18)})
    assert plan.remove == [tid(18)] and not plan.add and view.short
    plan = view.refill(m)
    assert plan.add == [tid(6)] and view.shown == [tid(12), tid(6)] and not view.short


def test_task_view_updates_in_place_and_volatile_sorts_move_rows() -> None:
    m = model()
    view = TaskView(limit=50)
    view.reset(m)
    apply(m, [frame("task.progress", {"_id": tid(0), "percent": 10})])
    plan = view.changed(m, {tid(0)})
    assert plan.update == [tid(0)] and not plan.add and not plan.remove and plan.order is None
    view.sort = Sort("state", descending=False)
    view.reset(m)
    apply(m, [frame("task.state", {"_id": tid(23), "state": "running", "previous": "inactive"})])
    plan = view.changed(m, {tid(23)})
    assert plan.order is not None and plan.order.index(tid(23)) < plan.order.index(tid(1))


# --- trees --------------------------------------------------------------------


def test_tree_building_and_summaries() -> None:
    m = model()
    assert tree_root(m, tid(13)) == tid(1)
    shape = build_tree(m.tasks, tid(1))
    assert [c.id for c in shape.children] == [tid(7), tid(19)]
    assert [c.id for c in shape.children[0].children] == [tid(13)]
    assert descendants(m.tasks, tid(1)) == [tid(7), tid(19), tid(13)]
    assert subtree_summary(m.tasks, tid(1)) == "0/4 done"
    m.tasks[tid(1)].state, m.tasks[tid(1)].exit_status = "terminated", "success"
    m.tasks[tid(7)].state, m.tasks[tid(7)].exit_status = "terminated", "failure"
    m.tasks[tid(19)].state = "running"
    assert subtree_summary(m.tasks, tid(1)) == "1/4 done, 1 failed, 1 running"


def test_tree_with_a_diamond_and_a_missing_node() -> None:
    tasks = {
        "a": Task("a", continuations=("b", "c")),
        "b": Task("b", continuations=("d",)),
        "c": Task("c", continuations=("d", "zz")),
        "d": Task("d", state="terminated", exit_status="success"),
    }
    shape = build_tree(tasks, "a")
    b, c = shape.children
    assert b.children[0].id == "d" and not b.children[0].repeat
    assert c.children[0].repeat and c.children[1].missing
    assert subtree_summary(tasks, "a") == "1/5 done"


# --- the link, rates, commands ---------------------------------------------------


def test_link_labels() -> None:
    link = Link()

    def label(now: float) -> str:
        return link.label(now, lambda t: f"t{t:.0f}")[0]

    assert label(0) == "◌ connecting…"
    link.connected()
    assert label(0) == "◌ loading…"
    link.snapshot_loaded(feed_up=True)
    assert label(0) == "● live" and link.live
    link.lost(100, "reset")
    assert label(101) == "◌ reconnecting…" and not link.live
    assert label(104) == "✘ stale since t100"
    link.connected()
    assert label(105) == "● live"
    link.loading()
    assert label(106) == "◌ resyncing…"


def test_rate_meter() -> None:
    meter = RateMeter(window_s=5)
    for second in range(10):
        meter.add(1000, T0 + second)
    assert meter.rate(T0 + 9.5) == 1000
    assert meter.rate(T0 + 30) == 0
    assert (
        rate_text(1234) == "1.2k ev/s" and rate_text(0) == "0 ev/s" and rate_text(2.5) == "2.5 ev/s"
    )


def test_parse_command() -> None:
    assert parse_command(":tasks", VIEW_COMMANDS) == ("tasks", "")
    assert parse_command("wk", VIEW_COMMANDS) == ("workers", "")
    assert parse_command(":sort -priority", VIEW_COMMANDS) == ("sort", "-priority")
    assert parse_command(":filter state:running queue:gpu", VIEW_COMMANDS) == (
        "filter",
        "state:running queue:gpu",
    )
    assert parse_command(":q", VIEW_COMMANDS) == ("quit", "")
    with pytest.raises(FilterError, match="unknown command 'pods'"):
        parse_command(":pods", VIEW_COMMANDS)


# --- the submit form --------------------------------------------------------------


def test_submission_is_validated_with_task_create() -> None:
    result = build_submission(
        {
            "command": "./train.sh",
            "name": "t",
            "cores": "2",
            "memory": "4 GiB",
            "gpus": "1",
            "queue": "gpu",
            "priority": "3",
            "retries": "2",
        }
    )
    assert not result.errors
    assert result.body == {
        "name": "t",
        "command": "./train.sh",
        "state": "available",
        "requested_resources": {"cores": 2.0, "memory": 4 * 2**30, "gpus": 1},
        "queue": "gpu",
        "priority": 3,
        "max_retry_count": 2,
    }


def test_submission_errors_name_their_fields() -> None:
    result = build_submission(
        {"memory": "lots", "queue": "a b", "retries": "-1", "cores": "x", "after": "nope"},
        resolve=lambda short: None,
    )
    assert set(result.errors) == {"command", "memory", "queue", "retries", "cores", "after"}
    assert "invalid memory 'lots'" in result.errors["memory"]
    assert not result.body


def test_submission_runs_when_its_parents_allow() -> None:
    parent = "6650f0c2a1b2c3d4e5f60718"
    result = build_submission({"command": "x", "after": parent, "run_when": "Failure"})
    assert not result.errors and result.body["run_when"] == "failure"
    bad = build_submission({"command": "x", "after": parent, "run_when": "sometimes"})
    assert "run_when" in bad.errors and not bad.body


def test_submission_time_limit_and_begin() -> None:
    # 2026-12-07 10:00 in UTC+2: "02:00" is the next 02:00 there, tomorrow at 00:00 UTC.
    zone = timezone(timedelta(hours=2))
    now = datetime(2026, 12, 7, 10, 0, tzinfo=zone).timestamp()
    result = build_submission(
        {"command": "x", "time_limit": "10 minutes", "begin": "02:00"}, now_s=now, tz=zone
    )
    assert not result.errors
    assert result.body["time_limit"] == 600
    assert result.body["not_before"] == datetime(2026, 12, 8, 0, 0, tzinfo=UTC).timestamp()
    seconds = build_submission({"command": "x", "time_limit": "90", "begin": "2030-01-02"})
    assert seconds.body["time_limit"] == 90
    assert seconds.body["not_before"] == datetime(2030, 1, 2, tzinfo=UTC).timestamp()
    bad = build_submission({"command": "x", "time_limit": "forever", "begin": "25:99"})
    assert set(bad.errors) == {"time_limit", "begin"} and not bad.body
    assert "invalid duration 'forever'" in bad.errors["time_limit"]


def test_submission_after_waits_inactive() -> None:
    parent = "6650f0c2a1b2c3d4e5f60718"
    result = build_submission(
        {"command": "x", "after": f"{parent}, 12345678"},
        resolve=lambda short: "aa" * 8 + short if short == "12345678" else None,
    )
    assert not result.errors
    assert result.after == [parent, "aa" * 8 + "12345678"]
    assert result.body["state"] == "inactive"


def test_clock_text_and_run_time() -> None:
    assert [clock_text(s) for s in (None, 0, 42.9, 3599, 3600, 3 * 3600 + 300, 5 * 86400)] == [
        "",
        "0:00",
        "0:42",
        "59:59",
        "1h00",
        "3h05",
        "5d",
    ]
    running = Task("a" * 24, state="running", worker="w1", started=100.0)
    assert run_time(running, 160.0) == 60.0
    ended = Task("b" * 24, state="terminated", worker="w1", started=100.0, ended=130.0)
    assert run_time(ended, 1000.0) == 30.0
    retrying = Task("c" * 24, state="available", worker="w1", started=100.0)
    assert run_time(retrying, 1000.0) is None  # waiting again: no attempt is running
