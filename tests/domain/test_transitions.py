"""Every transition effect as a plan, on plain values (no database, no event loop)."""

from __future__ import annotations

import json

import pytest

from banyan.errors import Conflict
from banyan.events import encode_data
from banyan.states import ABANDONED, FAILURE, SUCCESS, TIME_LIMIT_STATUS, Actor, Effect, State
from server.domain import transitions as T


def ref(task_id: str = "t", state: State = State.INACTIVE) -> T.TaskRef:
    return T.TaskRef(task_id, state, f"name-{task_id}", "q")


def data(change: T.Change) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(encode_data(change.event()))
    return loaded


# --- activate, group completion, release -----------------------------------------


def test_activate_makes_a_command_task_available() -> None:
    change = T.activate(ref(), group=False)
    assert (change.kind, change.state, change.releases) == (
        T.Kind.AVAILABLE,
        State.AVAILABLE,
        False,
    )
    assert data(change) == {
        "_id": "t",
        "state": "available",
        "previous": "inactive",
        "name": "name-t",
        "queue": "q",
    }


def test_a_group_task_succeeds_at_once_and_releases() -> None:
    change = T.activate(ref(), group=True)
    assert change.state is State.TERMINATED and change.releases
    assert data(change)["exit_status"] == SUCCESS


def test_release_readies_only_inactive_children_with_no_parent_left() -> None:
    children = [
        ("a", 0, "inactive"),
        ("b", 1, "inactive"),  # still waits on another parent
        ("c", 0, "cancelled"),  # cancelled meanwhile: stays so
    ]
    assert T.ready_after_release(children) == ["a"]


# --- cancel and cascade ------------------------------------------------------------


def test_cascade_cancels_what_has_not_started_and_stops_what_runs() -> None:
    found = [
        ref("i", State.INACTIVE),
        ref("r", State.RUNNING),
        ref("a", State.AVAILABLE),
        ref("done", State.TERMINATED),
        ref("gone", State.CANCELLED),
    ]
    changes = T.cascade_cancel(found, origin="root")
    assert [(c.task.id, c.state) for c in changes] == [
        ("i", State.CANCELLED),
        ("a", State.CANCELLED),
        ("r", State.PENDING_CANCELLATION),
    ]
    assert all(c.origin == "root" and data(c)["cause"] == "root" for c in changes)


def test_revive_undoes_a_cascade_and_readies_what_waits_on_nobody() -> None:
    changes, ready = T.revive([(ref("a", State.CANCELLED), 0), (ref("b", State.CANCELLED), 2)])
    assert [(c.task.id, c.state, c.origin) for c in changes] == [
        ("a", State.INACTIVE, None),
        ("b", State.INACTIVE, None),
    ]
    assert ready == ["a"]
    assert data(changes[0])["previous"] == "cancelled"


# --- a user's state change ------------------------------------------------------------


def test_user_activate_cancel_and_noop() -> None:
    assert T.user_change(ref(), State.AVAILABLE, pending=0, exit_status=None).effect is (
        Effect.ACTIVATE
    )
    assert T.user_change(ref(), State.CANCELLED, pending=0, exit_status=None).effect is (
        Effect.CANCEL
    )
    assert T.user_change(ref(), State.INACTIVE, pending=0, exit_status=None).effect is None


def test_user_cancel_of_a_running_task_asks_the_worker() -> None:
    running = ref(state=State.RUNNING)
    plan = T.user_change(running, State.PENDING_CANCELLATION, pending=0, exit_status=None)
    assert plan.effect is Effect.REQUEST_CANCEL and plan.change is not None
    assert plan.change.state is State.PENDING_CANCELLATION
    assert plan.change.origin == "t" and "cause" not in data(plan.change)


def test_a_task_with_parents_left_cannot_be_made_available() -> None:
    with pytest.raises(Conflict, match="waits on 2 parent task"):
        T.user_change(ref(), State.AVAILABLE, pending=2, exit_status=None)


def test_retry_of_a_failure_is_allowed_but_not_of_a_success() -> None:
    done = ref(state=State.TERMINATED)
    plan = T.user_change(done, State.AVAILABLE, pending=0, exit_status=FAILURE)
    assert plan.effect is Effect.RETRY
    with pytest.raises(Conflict, match="cannot be retried"):
        T.user_change(done, State.AVAILABLE, pending=0, exit_status=SUCCESS)


def test_a_forbidden_user_change_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        T.user_change(ref(state=State.RUNNING), State.INACTIVE, pending=0, exit_status=None)


# --- the end of an attempt (finish, retry, abandon, undelivered) ------------------------


def end(
    state: State = State.RUNNING,
    status: str = SUCCESS,
    *,
    retries: tuple[int, int] = (0, 0),
    actor: Actor = Actor.WORKER,
    undelivered: bool = False,
    abandons: tuple[int, int] = (0, 3),
) -> T.AttemptEnd:
    return T.end_attempt(
        ref(state=state),
        attempt=3,
        retry_count=retries[0],
        max_retry_count=retries[1],
        exit_status=status,
        actor=actor,
        undelivered=undelivered,
        abandon_count=abandons[0],
        max_abandon_count=abandons[1],
    )


def test_success_terminates_and_releases() -> None:
    done = end()
    assert done.outcome.state is State.TERMINATED and done.outcome.release
    assert not done.outcome.cascade_cancel
    assert json.loads(encode_data(done.event)) == {
        "_id": "t",
        "state": "terminated",
        "previous": "running",
        "name": "name-t",
        "queue": "q",
        "exit_status": SUCCESS,
        "attempt": 3,
    }


def test_failure_retries_while_retries_are_left() -> None:
    again = end(status=FAILURE, retries=(0, 2))
    assert again.outcome.state is State.AVAILABLE and again.outcome.retry
    assert json.loads(encode_data(again.event))["retry"] is True


def test_failure_without_retries_left_terminates_and_cascades() -> None:
    over = end(status=FAILURE, retries=(2, 2))
    assert over.outcome.state is State.TERMINATED and over.outcome.cascade_cancel
    assert "retry" not in json.loads(encode_data(over.event))


def test_an_abandonment_uses_the_crash_budget_not_the_retry_budget() -> None:
    lost = end(status=ABANDONED, retries=(0, 0), abandons=(2, 3), actor=Actor.MONITOR)
    assert lost.outcome.state is State.AVAILABLE and lost.outcome.abandoned
    assert not (lost.outcome.retry or lost.outcome.cascade_cancel)


def test_a_worker_stopped_is_an_abandonment_too() -> None:
    stopped = end(status="abandoned (worker stopped)", retries=(0, 0), abandons=(0, 1))
    assert stopped.outcome.state is State.AVAILABLE and stopped.outcome.abandoned


def test_an_abandonment_past_the_crash_budget_ends_the_task() -> None:
    over = end(status=ABANDONED, retries=(0, 5), abandons=(3, 3), actor=Actor.MONITOR)
    assert over.outcome.state is State.TERMINATED and over.outcome.cascade_cancel
    assert not over.outcome.abandoned and not over.outcome.retry


def test_an_abandoned_cancellation_ends_cancelled() -> None:
    gone = end(State.PENDING_CANCELLATION, ABANDONED, actor=Actor.MONITOR)
    assert gone.outcome.state is State.CANCELLED


def test_a_time_limit_is_the_task_s_own_failure() -> None:
    timed = end(status=TIME_LIMIT_STATUS, retries=(0, 1))
    assert timed.outcome.state is State.AVAILABLE and timed.outcome.retry
    final = end(status=TIME_LIMIT_STATUS, retries=(1, 1))
    assert final.outcome.state is State.TERMINATED and final.outcome.cascade_cancel


def test_a_cancellation_request_wins_over_a_retry() -> None:
    stopped = end(State.PENDING_CANCELLATION, FAILURE, retries=(0, 5))
    assert stopped.outcome.state is State.CANCELLED and stopped.outcome.cascade_cancel


def test_an_undelivered_attempt_requeues_without_counting_a_retry() -> None:
    back = end(status=ABANDONED, actor=Actor.MONITOR, undelivered=True)
    assert back.outcome.state is State.AVAILABLE
    assert not (back.outcome.retry or back.outcome.release or back.outcome.cascade_cancel)


def test_the_claim_event_names_worker_and_attempt() -> None:
    event = T.claimed(ref(state=State.AVAILABLE), worker="w1", attempt=1)
    assert json.loads(encode_data(event)) == {
        "_id": "t",
        "state": "running",
        "previous": "available",
        "name": "name-t",
        "queue": "q",
        "worker": "w1",
        "attempt": 1,
    }


def test_a_new_parent_makes_an_available_task_wait() -> None:
    events = T.waits_again([ref("a", State.AVAILABLE), ref("b", State.INACTIVE)])
    assert [(e.data.id, e.data.state, e.data.previous) for e in events] == [
        ("a", "inactive", "available")
    ]


def test_unqueue_returns_a_queued_attempt_without_a_retry() -> None:
    end = T.unqueue(T.TaskRef("a" * 24, "running", None, "default"), attempt=2)
    assert end.outcome.state == "available" and not end.outcome.retry
    assert not end.outcome.cascade_cancel and not end.outcome.release
    assert end.event.data.exit_status == T.RETURNED


def test_unqueue_of_a_task_asked_to_stop_cancels_it() -> None:
    end = T.unqueue(T.TaskRef("a" * 24, "pending_cancellation", None, "default"), attempt=1)
    assert end.outcome.state == "cancelled" and not end.outcome.retry
    assert end.outcome.cascade_cancel
    assert end.event.data.exit_status == "cancelled"
