"""Pending reasons on plain values (no database, no event loop)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from banyan.resources import Amounts, Resources, free_share
from banyan.states import State
from server.domain import claims
from server.domain import pending as p


def res(**amounts: Any) -> Resources:
    return Resources.model_validate(amounts)


def task(state: State = State.AVAILABLE, **extra: Any) -> p.PendingTask:
    fields: dict[str, Any] = {"queue": "q", "request": res(cores=2), **extra}
    return p.PendingTask(state=state, **fields)


def worker(state: str = "idle", name: str = "w", **extra: Any) -> p.WorkerSeen:
    fields: dict[str, Any] = {"queues": ["q"], "capacity": res(cores=4), **extra}
    return p.WorkerSeen(name=name, state=state, **fields)


@pytest.mark.parametrize(
    ("given", "code", "reason"),
    [
        (task(State.INACTIVE, pending_dependency_count=2), p.WAITING_ON_PARENTS, "waiting on 2"),
        (task(State.INACTIVE), p.HELD, "held: make it available"),
        (task(State.RUNNING, worker="w1"), p.NOT_PENDING, "running on worker 'w1'"),
        (task(State.PENDING_CANCELLATION, worker="w1"), p.NOT_PENDING, "being cancelled"),
        (task(State.TERMINATED, exit_status="failure"), p.NOT_PENDING, "terminated: failure"),
        (task(State.CANCELLED), p.NOT_PENDING, "cancelled"),
    ],
)
def test_tasks_that_are_not_available(given: p.PendingTask, code: str, reason: str) -> None:
    got_code, got_reason = p.pending_reason(given, [worker()])
    assert got_code == code
    assert got_reason.startswith(reason)


def test_no_worker_serves_the_queue() -> None:
    code, reason = p.pending_reason(task(), [worker(queues=["other"]), worker("draining")])
    assert code == p.NO_WORKER_FOR_QUEUE
    assert reason == "no connected worker serves queue 'q' (1 draining worker(s) do)"


def test_a_disconnected_worker_does_not_serve() -> None:
    code, _ = p.pending_reason(task(), [worker("disconnected")])
    assert code == p.NO_WORKER_FOR_QUEUE


def test_insufficient_resources_names_the_shortfall() -> None:
    wanted = task(request=res(cores=8, licences=2))
    code, reason = p.pending_reason(wanted, [worker(capacity=res(cores=4, licences=1))])
    assert code == p.INSUFFICIENT_RESOURCES
    assert reason == (
        "needs 8 cores; the largest worker serving 'q' has 4; "
        "needs 2 licences; the largest worker serving 'q' has 1"
    )


def test_busy_when_every_able_worker_is_full() -> None:
    full = worker("busy", capacity=res(cores=4), running=[res(cores=3)])
    code, reason = p.pending_reason(task(), [full])
    assert code == p.BUSY
    assert reason.startswith("1 worker(s) serving 'q' could run it")


def test_queued_when_a_worker_has_room_fractional_cores_included() -> None:
    # 4 - 3 * 0.6666... leaves 2 cores give or take rounding: the claim policy
    # would hand the task out, so the reason says so too
    third = res(cores=4 / 6)
    roomy = worker("busy", name="r", capacity=res(cores=4), running=[third, third, third])
    code, reason = p.pending_reason(task(), [roomy])
    assert code == p.QUEUED
    assert reason == "worker 'r' has room for it: it should start momentarily"


def test_custom_resources_in_use_make_a_worker_busy() -> None:
    wanted = task(request=res(cores=1, licences=1))
    held = worker(capacity=res(cores=8, licences=1), running=[res(cores=1, licences=1)])
    assert p.pending_reason(wanted, [held])[0] == p.BUSY


amounts = st.floats(min_value=0, max_value=8, allow_nan=False).map(lambda x: round(x, 2))


@given(
    want=st.tuples(amounts, st.integers(0, 64), amounts),
    capacity=st.tuples(amounts, st.integers(0, 64), amounts),
    running=st.lists(st.tuples(amounts, st.integers(0, 16), amounts), max_size=4),
)
def test_queued_exactly_when_the_claim_policy_would_hand_it_out(
    want: tuple[float, int, float],
    capacity: tuple[float, int, float],
    running: list[tuple[float, int, float]],
) -> None:
    """By construction: the reason says "queued" iff a claim with the worker's
    free share would pick the task (when the worker could run it at all)."""

    def r(cores: float, memory: int, licences: float) -> Resources:
        return res(cores=cores, memory=memory, licences=licences)

    the_worker = worker(capacity=r(*capacity), running=[r(*x) for x in running])
    code, _ = p.pending_reason(task(request=r(*want)), [the_worker])
    free = free_share(the_worker.capacity, the_worker.running)
    request = Amounts.of(r(*want))
    picked = claims.pack([request], free, 1, lambda a: a)
    if code in (p.QUEUED, p.BUSY):
        assert (code == p.QUEUED) == bool(picked)
    else:
        assert code == p.INSUFFICIENT_RESOURCES and not picked


def test_busy_when_the_room_goes_to_tasks_ahead_in_line() -> None:
    roomy = worker(capacity=res(cores=4), ahead=[Amounts(2, 0, 0), Amounts(2, 0, 0)])
    code, reason = p.pending_reason(task(), [roomy])
    assert code == p.BUSY
    assert reason == (
        "1 worker(s) serving 'q' have room for it, but tasks ahead of it in line "
        "(higher priority, or older) take that room first"
    )
    one_ahead = worker(capacity=res(cores=4), ahead=[Amounts(2, 0, 0)])
    assert p.pending_reason(task(), [one_ahead])[0] == p.QUEUED
    unknown_line = worker(capacity=res(cores=4), ahead=[], ahead_complete=False)
    assert p.pending_reason(task(), [unknown_line])[0] == p.BUSY


def test_never_in_time_asks_the_lifetime_rule_of_workers_that_fit() -> None:
    short = worker(name="short", remaining_s=1800.0)
    small_but_long = worker(name="small", capacity=res(cores=1), remaining_s=7200.0)
    hour = 3600.0
    reason = p.never_in_time("q", res(cores=2), hour, [short, small_but_long])
    assert reason == (
        "its time limit is 1h; no connected worker serving 'q' has that much remaining "
        "time (the most is 30m)"
    )
    # The same rule as the claim policy: a limit equal to the lifetime fits.
    assert claims.fits_lifetime(1800.0, short.remaining_s)
    assert p.never_in_time("q", res(cores=2), 1800.0, [short]) is None
    assert p.never_in_time("q", res(cores=2), None, [short]) is None  # no limit asked
    assert p.never_in_time("q", res(cores=2), hour, [short, worker(name="ageless")]) is None
    # No fitting worker at all is never_fits's answer, not this one.
    assert p.never_in_time("q", res(cores=8), hour, [short]) is None
    assert p.never_fits("q", res(cores=2), [short]) is None
