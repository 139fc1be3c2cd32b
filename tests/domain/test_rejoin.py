"""A worker's rejoin on plain values (no database, no event loop)."""

from __future__ import annotations

from server.domain.workers import rejoin


def test_named_attempts_still_its_own_resume_the_others_are_dropped() -> None:
    plan = rejoin(
        held=[("a", "k1"), ("b", "k2"), ("c", "k3")],
        current={"a": "running", "b": None, "c": "terminated"},
        open_attempts=[("a", "k1")],
        same_process=True,
    )
    assert (plan.resumed, plan.dropped) == (["a"], ["b", "c"])
    assert plan.unnamed == []


def test_a_pending_cancellation_resumes_so_the_worker_can_stop_it() -> None:
    plan = rejoin(
        held=[("a", "k")],
        current={"a": "pending_cancellation"},
        open_attempts=[],
        same_process=True,
    )
    assert plan.resumed == ["a"]


def test_unnamed_open_attempts_are_undelivered_only_for_the_same_process() -> None:
    same = rejoin(held=[], current={}, open_attempts=[("x", "k")], same_process=True)
    assert same.unnamed == [("x", "k")] and same.undelivered
    restarted = rejoin(held=[], current={}, open_attempts=[("x", "k")], same_process=False)
    assert restarted.unnamed == [("x", "k")] and not restarted.undelivered


def test_another_process_naming_attempts_resumes_none_and_they_end() -> None:
    """Re-attaching needs the proof (issue 11): a process that names the
    attempts of the one it replaces, keys and all, goes on with none of them;
    they end under the retry rule."""
    plan = rejoin(
        held=[("a", "k1")],
        current={"a": "running"},
        open_attempts=[("a", "k1"), ("b", "k2")],
        same_process=False,
    )
    assert (plan.resumed, plan.dropped) == ([], ["a"])
    assert plan.unnamed == [("a", "k1"), ("b", "k2")] and not plan.undelivered
