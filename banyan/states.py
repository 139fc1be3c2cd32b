"""The task state machine (SPEC §4): the states, who may move a task between
them, and what each move sets off. Pure and table-driven; the store applies it.

Besides SPEC §4's table there is one user transition more, *retry*: a task that
ended in failure (or was cancelled) may be made ``available`` again by its
owner. ``banyan retry`` and the TUI's ``r`` use it. Re-running a task that
succeeded is refused: its continuations have already been released.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from banyan.errors import Conflict


class State(StrEnum):
    INACTIVE = "inactive"
    AVAILABLE = "available"
    RUNNING = "running"
    PENDING_CANCELLATION = "pending_cancellation"
    CANCELLED = "cancelled"
    TERMINATED = "terminated"


FINAL_STATES = frozenset({State.CANCELLED, State.TERMINATED})
ACTIVE_STATES = frozenset({State.RUNNING, State.PENDING_CANCELLATION})
# States a user may choose when creating a task.
CREATE_STATES = frozenset({State.INACTIVE, State.AVAILABLE})


class Actor(StrEnum):
    USER = "user"  # a provider or admin, through PATCH
    CLAIM = "claim"  # the server, on a worker's claim
    WORKER = "worker"  # a worker's report about its attempt
    MONITOR = "monitor"  # the server, when a worker is lost


class Effect(StrEnum):
    ACTIVATE = "activate"  # becomes claimable (needs no pending dependencies)
    CANCEL = "cancel"  # ends now; continuations cancelled recursively
    START = "start"  # a new attempt
    REQUEST_CANCEL = "request_cancel"  # tell the worker to stop it
    FINISH = "finish"  # the attempt ended: success releases, failure retries or cascades
    CANCELLED = "cancelled"  # the worker stopped it; continuations cancelled
    ABANDON = "abandon"  # the worker vanished: the retry rule
    RETRY = "retry"  # a user re-runs a failed or cancelled task


@dataclass(frozen=True)
class Transition:
    source: State
    target: State
    actor: Actor
    effect: Effect


_S = State
TRANSITIONS: tuple[Transition, ...] = (
    Transition(_S.INACTIVE, _S.AVAILABLE, Actor.USER, Effect.ACTIVATE),
    Transition(_S.INACTIVE, _S.CANCELLED, Actor.USER, Effect.CANCEL),
    Transition(_S.AVAILABLE, _S.CANCELLED, Actor.USER, Effect.CANCEL),
    Transition(_S.AVAILABLE, _S.RUNNING, Actor.CLAIM, Effect.START),
    Transition(_S.RUNNING, _S.PENDING_CANCELLATION, Actor.USER, Effect.REQUEST_CANCEL),
    Transition(_S.RUNNING, _S.TERMINATED, Actor.WORKER, Effect.FINISH),
    Transition(_S.RUNNING, _S.AVAILABLE, Actor.WORKER, Effect.FINISH),
    Transition(_S.PENDING_CANCELLATION, _S.TERMINATED, Actor.WORKER, Effect.FINISH),
    Transition(_S.PENDING_CANCELLATION, _S.CANCELLED, Actor.WORKER, Effect.CANCELLED),
    Transition(_S.RUNNING, _S.CANCELLED, Actor.WORKER, Effect.CANCELLED),
    Transition(_S.RUNNING, _S.TERMINATED, Actor.MONITOR, Effect.ABANDON),
    Transition(_S.RUNNING, _S.AVAILABLE, Actor.MONITOR, Effect.ABANDON),
    Transition(_S.PENDING_CANCELLATION, _S.CANCELLED, Actor.MONITOR, Effect.ABANDON),
    Transition(_S.TERMINATED, _S.AVAILABLE, Actor.USER, Effect.RETRY),
    Transition(_S.CANCELLED, _S.AVAILABLE, Actor.USER, Effect.RETRY),
)

_TABLE: dict[tuple[State, State, Actor], Transition] = {
    (t.source, t.target, t.actor): t for t in TRANSITIONS
}


def transition(current: State, target: State, actor: Actor) -> Transition | None:
    """The transition ``current → target`` by ``actor``; ``None`` for a no-op.

    A state to itself is a no-op success (SPEC §4). Anything not in the table
    raises ``Conflict`` naming the current state.
    """
    if current == target:
        return None
    found = _TABLE.get((current, target, actor))
    if found is None:
        raise Conflict(
            f"cannot change state from '{current}' to '{target}': the task is {current}"
            + _hint(current, target, actor)
        )
    return found


def _hint(current: State, target: State, actor: Actor) -> str:
    if actor is Actor.USER and target is State.CANCELLED and current in ACTIVE_STATES:
        return "; a running task is cancelled by setting 'pending_cancellation'"
    if actor is Actor.USER and current in ACTIVE_STATES:
        return "; only its worker can end it"
    if actor is Actor.USER and target in (State.RUNNING, State.TERMINATED):
        return f"; '{target}' is set by workers, not users"
    return ""


# Exit statuses (SPEC §3).
SUCCESS = "success"
FAILURE = "failure"
CANCELLED_STATUS = "cancelled"
ABANDONED = "abandoned (worker unreachable)"
# Every abandonment ("abandoned (worker unreachable)", "abandoned (worker
# stopped)", ...) starts so: the worker died or stopped, the task did not fail.
ABANDONED_PREFIX = "abandoned"
# A task stopped at its wall-time limit (``time_limit``): the task's own failure.
TIME_LIMIT_STATUS = "failure (time limit)"


def is_abandonment(exit_status: str | None) -> bool:
    """Whether an attempt ended because its worker died, was lost or stopped."""
    return exit_status is not None and exit_status.startswith(ABANDONED_PREFIX)


def failure_for_signal(signal_name: str) -> str:
    """``"failure (SIGKILL)"`` for a process ended by a signal."""
    return f"{FAILURE} ({signal_name})"


def is_success(exit_status: str | None) -> bool:
    return exit_status == SUCCESS


@dataclass(frozen=True)
class Outcome:
    """Where a task goes once an attempt of it has ended."""

    state: State
    retry: bool  # back to available, retry_count + 1
    release: bool  # continuations' pending counts drop
    cascade_cancel: bool  # continuations are cancelled recursively
    abandoned: bool = False  # put back after its worker died: abandon_count + 1


def after_attempt(
    *,
    current: State,
    exit_status: str,
    retry_count: int,
    max_retry_count: int,
) -> Outcome:
    """Apply the retry rule to an attempt that ended with ``exit_status``.

    A cancellation request wins over a retry: a task in
    ``pending_cancellation`` that fails or is abandoned is not run again.
    """
    if exit_status == SUCCESS:
        return Outcome(State.TERMINATED, retry=False, release=True, cascade_cancel=False)
    if exit_status == CANCELLED_STATUS or current is State.PENDING_CANCELLATION:
        return Outcome(State.CANCELLED, retry=False, release=False, cascade_cancel=True)
    if retry_count < max_retry_count:
        return Outcome(State.AVAILABLE, retry=True, release=False, cascade_cancel=False)
    return Outcome(State.TERMINATED, retry=False, release=False, cascade_cancel=True)


def after_abandonment(
    *, current: State, exit_status: str, abandon_count: int, max_abandon_count: int
) -> Outcome:
    """The crash budget (issue 13): an attempt whose worker died, was lost or
    stopped is not the task's failure, so it does not use ``max_retry_count``.
    The task is put back while ``abandon_count < max_abandon_count``; after
    that it ends with the abandonment as its exit status. A cancellation
    request still wins: a task in ``pending_cancellation`` ends cancelled."""
    if current is State.PENDING_CANCELLATION:
        return Outcome(State.CANCELLED, retry=False, release=False, cascade_cancel=True)
    if abandon_count < max_abandon_count:
        return Outcome(
            State.AVAILABLE, retry=False, release=False, cascade_cancel=False, abandoned=True
        )
    return Outcome(State.TERMINATED, retry=False, release=False, cascade_cancel=True)
