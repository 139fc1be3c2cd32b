"""The state machine table, exhaustively: every (from, to, actor) is either a
listed transition, a no-op, or a 409 naming the current state."""

from __future__ import annotations

import itertools

import pytest

from banyan.errors import Conflict
from banyan.states import (
    ABANDONED,
    CANCELLED_STATUS,
    FAILURE,
    SUCCESS,
    TRANSITIONS,
    Actor,
    Effect,
    State,
    after_attempt,
    failure_for_signal,
    transition,
)

LISTED = {(t.source, t.target, t.actor): t.effect for t in TRANSITIONS}


@pytest.mark.parametrize(
    ("source", "target", "actor"), list(itertools.product(State, State, Actor))
)
def test_every_combination(source: State, target: State, actor: Actor) -> None:
    if source == target:
        assert transition(source, target, actor) is None
    elif (source, target, actor) in LISTED:
        step = transition(source, target, actor)
        assert step is not None
        assert step.effect is LISTED[(source, target, actor)]
    else:
        with pytest.raises(Conflict) as info:
            transition(source, target, actor)
        assert f"the task is {source}" in info.value.message
        assert info.value.status == 409


def test_spec_rows_present() -> None:
    user = {(s, t) for s, t, a in LISTED if a is Actor.USER}
    assert (State.INACTIVE, State.AVAILABLE) in user
    assert (State.INACTIVE, State.CANCELLED) in user
    assert (State.AVAILABLE, State.CANCELLED) in user
    assert (State.RUNNING, State.PENDING_CANCELLATION) in user
    assert LISTED[(State.AVAILABLE, State.RUNNING, Actor.CLAIM)] is Effect.START
    assert (State.PENDING_CANCELLATION, State.CANCELLED, Actor.WORKER) in LISTED
    assert (State.RUNNING, State.AVAILABLE, Actor.MONITOR) in LISTED
    assert (State.RUNNING, State.TERMINATED, Actor.MONITOR) in LISTED


def test_users_never_start_or_finish_tasks() -> None:
    for _source, target, actor in LISTED:
        if actor is Actor.USER:
            assert target not in (State.RUNNING, State.TERMINATED)


def test_running_task_cancel_hint() -> None:
    with pytest.raises(Conflict, match="pending_cancellation"):
        transition(State.RUNNING, State.CANCELLED, Actor.USER)


@pytest.mark.parametrize("current", [State.RUNNING, State.PENDING_CANCELLATION])
def test_success_releases(current: State) -> None:
    out = after_attempt(current=current, exit_status=SUCCESS, retry_count=0, max_retry_count=3)
    assert out.state is State.TERMINATED and out.release and not out.retry
    assert not out.cascade_cancel


@pytest.mark.parametrize("status", [FAILURE, failure_for_signal("SIGKILL"), ABANDONED])
def test_failure_retries_then_cascades(status: str) -> None:
    retried = after_attempt(
        current=State.RUNNING, exit_status=status, retry_count=1, max_retry_count=2
    )
    assert retried.state is State.AVAILABLE and retried.retry and not retried.release
    final = after_attempt(
        current=State.RUNNING, exit_status=status, retry_count=2, max_retry_count=2
    )
    assert final.state is State.TERMINATED and final.cascade_cancel and not final.retry


@pytest.mark.parametrize("status", [FAILURE, ABANDONED, CANCELLED_STATUS])
def test_cancellation_request_wins_over_retry(status: str) -> None:
    out = after_attempt(
        current=State.PENDING_CANCELLATION, exit_status=status, retry_count=0, max_retry_count=5
    )
    assert out.state is State.CANCELLED and out.cascade_cancel and not out.retry


def test_every_outcome_is_a_listed_transition() -> None:
    statuses = [SUCCESS, FAILURE, ABANDONED, CANCELLED_STATUS]
    for current, status, retries in itertools.product(
        [State.RUNNING, State.PENDING_CANCELLATION], statuses, [0, 1]
    ):
        out = after_attempt(
            current=current, exit_status=status, retry_count=0, max_retry_count=retries
        )
        actor = Actor.MONITOR if status == ABANDONED else Actor.WORKER
        assert (current, out.state, actor) in LISTED, (current, status, retries, out)
