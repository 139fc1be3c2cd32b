"""The scorecard's checker on hand-made histories: a clean one passes, and each
kind of violation, planted on purpose, is found and counted."""

from __future__ import annotations

from tests.faults.history import (
    ABANDONED,
    Cancel,
    Execution,
    Feed,
    History,
    Probe,
    ServerAttempt,
    Submit,
    check,
    feed_violations,
    parse_marks,
    percentiles,
)

A, B, C = "a" * 24, "b" * 24, "c" * 24


def attempt(task: str, n: int, status: str | None = "success", worker: str = "w1") -> ServerAttempt:
    return ServerAttempt(task, n, worker, f"key-{task[:1]}-{n}", 10.0 * n, 10.0 * n + 1, status)


def clean() -> History:
    """A and B submitted and acknowledged, each ran once; C unacknowledged, never created;
    B is A's continuation and started after A succeeded; one subscriber saw it all."""
    return History(
        submits=[Submit((A, B), 1.0, True, 201), Submit((C,), 1.5, False, None)],
        executions=[Execution(A, 1, 100, 2.0, 3.0), Execution(B, 1, 101, 3.5, 4.0)],
        attempts=[attempt(A, 1), attempt(B, 1)],
        present={A, B},
        final_states={A: "terminated", B: "terminated"},
        parents={B: [A]},
        feeds=[Feed(since=0, seqs=[1, 2, 3, 4])],
        reference_seqs=[1, 2, 3, 4],
    )


def test_a_clean_history_has_no_violation() -> None:
    result = check("clean", clean())
    assert result.violations() == {}
    assert result.tasks == 2  # acknowledged ones
    assert result.details == {}


def test_an_acknowledged_task_missing_after_the_run_is_lost() -> None:
    h = clean()
    h.present = {B}
    result = check("lost", h)
    assert result.acknowledged_lost == 1
    assert result.details["acknowledged_lost"] == [A]


def test_an_unacknowledged_submit_may_be_missing_or_present() -> None:
    h = clean()
    assert check("absent", h).acknowledged_lost == 0
    h.present.add(C)
    h.final_states[C] = "terminated"
    assert check("present", h).violations() == {}


def test_an_execution_the_server_never_assigned_is_unexpected() -> None:
    h = clean()
    h.executions.append(Execution(A, 2, 102, 5.0, 6.0))  # no attempt 2 on the server
    result = check("ghost", h)
    assert result.unexpected_executions == 1
    assert "not in the server's history" in result.details["unexpected_executions"][0][2]


def test_an_attempt_that_ran_twice_is_unexpected() -> None:
    h = clean()
    h.executions.append(Execution(A, 1, 103, 5.0, 6.0))  # same attempt, another shell
    result = check("twice", h)
    assert result.unexpected_executions == 1
    assert "more than once" in result.details["unexpected_executions"][0][2]


def test_a_task_nobody_submitted_is_unexpected() -> None:
    h = clean()
    h.executions.append(Execution("d" * 24, 1, 104, 5.0, 6.0))
    assert check("stranger", h).unexpected_executions == 1


def test_an_execution_after_an_acknowledged_cancel_is_unexpected() -> None:
    h = clean()
    h.cancels.append(Cancel(B, 3.0, 3.1, 200, "cancelled"))  # B started at 3.5
    result = check("after cancel", h)
    assert result.unexpected_executions == 1
    assert "after its cancel" in result.details["unexpected_executions"][0][2]
    # A cancel that only asked a running task to stop does not forbid anything.
    h.cancels[0] = Cancel(B, 3.0, 3.1, 200, "pending_cancellation")
    assert check("pending", h).unexpected_executions == 0
    # Nor does a refused one.
    h.cancels[0] = Cancel(B, 3.0, 3.1, 409, None)
    assert check("refused", h).unexpected_executions == 0


def test_a_continuation_that_starts_before_its_parent_succeeded_is_unexpected() -> None:
    h = clean()
    h.executions[0] = Execution(A, 1, 100, 2.0, None)  # A never succeeded (killed)
    result = check("orphaned child", h)
    assert result.unexpected_executions == 1
    assert "before its parent" in result.details["unexpected_executions"][0][2]


def test_a_rerun_while_the_first_execution_lives_is_a_duplicate() -> None:
    h = clean()
    h.attempts.append(attempt(A, 2))
    # Found by the lock: attempt 1 was killed (no end) but still held it.
    h.executions.append(Execution(A, 2, 105, 2.5, 3.5, overlapped=True))
    result = check("lock", h)
    assert result.duplicate_concurrent == 1
    assert result.unexpected_executions == 0
    # Found by the intervals alone.
    h.executions[-1] = Execution(A, 2, 105, 2.5, 3.5)
    assert check("intervals", h).duplicate_concurrent == 1
    # A rerun after the first one ended is not.
    h.executions[-1] = Execution(A, 2, 105, 3.2, 3.5)
    assert check("sequential", h).duplicate_concurrent == 0


def test_a_stale_report_taken_by_the_server_is_counted() -> None:
    h = clean()
    h.attempts = [attempt(A, 1, ABANDONED), attempt(A, 2), attempt(B, 1)]
    h.executions.append(Execution(A, 2, 106, 5.0, 6.0))
    h.abandoned = {(A, 1): ABANDONED}
    h.probes = [Probe(A, 1, 409)]
    assert check("refused", h).violations() == {}
    h.probes.append(Probe(A, 1, 200))  # accepted
    assert check("probe", h).stale_writes_accepted == 1
    h.probes.pop()
    h.attempts[0] = attempt(A, 1, "success")  # the abandoned attempt was rewritten
    result = check("rewritten", h)
    assert result.stale_writes_accepted == 1
    assert "became 'success'" in result.details["stale_writes_accepted"][0]


def test_feed_gaps_duplicates_and_disorder_are_found() -> None:
    reference = [1, 2, 3, 4, 5, 6]
    assert feed_violations(Feed(0, [1, 2, 3, 4, 5, 6]), reference) == {
        "gaps": [],
        "duplicates": [],
        "out_of_order": [],
    }
    assert feed_violations(Feed(0, [1, 2, 4, 5, 6]), reference)["gaps"] == [3]
    assert feed_violations(Feed(0, [1, 2, 3, 3, 4, 5, 6]), reference)["duplicates"] == [3]
    assert feed_violations(Feed(0, [1, 2, 4, 3, 5, 6]), reference)["out_of_order"] == [3]
    # A subscriber that began at since=3 owes nothing before 4.
    assert feed_violations(Feed(3, [4, 5, 6]), reference)["gaps"] == []
    h = clean()
    h.feeds.append(Feed(since=0, seqs=[1, 3, 3]))
    result = check("feed", h)
    assert result.feed_gaps == 3  # 2 and 4 missing, 3 twice
    assert result.details["feed"]


def test_orphans_and_stuck_tasks_are_counted() -> None:
    h = clean()
    h.orphans = [4242]
    h.final_states[B] = "pending_cancellation"
    result = check("leftovers", h)
    assert result.orphans == 1
    assert result.stuck == 1
    assert result.violations() == {"orphans": 1, "stuck": 1}


def test_a_task_that_ended_without_ever_running_is_counted() -> None:
    h = clean()
    h.executions = [e for e in h.executions if e.task != B]  # B's attempt never started
    h.attempts[1] = attempt(B, 1, ABANDONED)
    h.parents = {}
    result = check("dropped", h)
    assert result.never_ran == 1
    assert result.violations() == {"never_ran": 1}
    assert result.details["never_ran"] == [(B, [ABANDONED])]
    h.final_states[B] = "cancelled"  # cancelled before it ran: fine
    assert check("cancelled", h).violations() == {}


def test_marks_pair_start_end_and_overlap_by_shell() -> None:
    lines = [
        [A, "1", "100", "start", "2.0"],
        [A, "2", "200", "overlap", "2.5"],
        [A, "2", "200", "start", "2.5"],
        [A, "1", "100", "end", "3.0"],
        [A, "2", "200", "end", "4.0"],
        [B, "1", "300", "start"],  # torn line
        ["garbage"],
    ]
    assert parse_marks(lines) == [
        Execution(A, 1, 100, 2.0, 3.0, False),
        Execution(A, 2, 200, 2.5, 4.0, True),
    ]


def test_percentiles() -> None:
    assert percentiles([1.0, 2.0, 3.0]) == (2.0, 2.98)
    p50, p99 = percentiles([])
    assert p50 != p50 and p99 != p99
