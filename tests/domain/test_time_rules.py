"""Issue 13's time rules on plain values: begin times and worker lifetimes in
the claim policy, and the pending reasons they give."""

from __future__ import annotations

from typing import Any

from banyan.resources import Resources
from banyan.states import State
from server.domain import claims
from server.domain import pending as p

NOW = 1_800_000_000.0


def task(**extra: Any) -> p.PendingTask:
    fields: dict[str, Any] = {"queue": "q", "request": Resources(cores=1), "now": NOW, **extra}
    return p.PendingTask(state=State.AVAILABLE, **fields)


def worker(name: str = "w", **extra: Any) -> p.WorkerSeen:
    fields: dict[str, Any] = {"queues": ["q"], "capacity": Resources(cores=4), **extra}
    return p.WorkerSeen(name=name, state="idle", **fields)


def test_begun() -> None:
    assert claims.begun(None, NOW)
    assert claims.begun(NOW, NOW)
    assert not claims.begun(NOW + 0.5, NOW)


def test_a_limit_fits_a_lifetime_as_hyperqueue_matches_them() -> None:
    assert claims.fits_lifetime(10, 10) and claims.fits_lifetime(5, 10)
    assert not claims.fits_lifetime(10.5, 10)
    assert claims.fits_lifetime(None, 1)  # a task without a limit asks for no time
    assert claims.fits_lifetime(3600, None)  # a worker without a lifetime has all
    assert claims.time_bounds(NOW, 7.0) == (NOW, 7.0)


def test_the_begin_time_comes_first() -> None:
    code, reason = p.pending_reason(task(not_before=NOW + 60), [worker()])
    assert code == p.NOT_BEFORE
    assert reason == "not before Fri, 15 Jan 2027 08:01:00 GMT"
    assert p.pending_reason(task(not_before=NOW - 1), [worker()])[0] == p.QUEUED


def test_no_worker_with_enough_time_left() -> None:
    code, reason = p.pending_reason(
        task(time_limit=600), [worker("a", remaining_s=100), worker("b", remaining_s=300)]
    )
    assert code == p.INSUFFICIENT_TIME
    assert "600 s" in reason and "the most: 300 s" in reason


def test_a_worker_with_time_enough_takes_it() -> None:
    workers = [worker("a", remaining_s=100), worker("b", remaining_s=900)]
    code, reason = p.pending_reason(task(time_limit=600), workers)
    assert code == p.QUEUED and "'b'" in reason
    assert p.pending_reason(task(), [worker("a", remaining_s=1)])[0] == p.QUEUED
