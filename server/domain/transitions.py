"""What each transition does, as plans a store applies.

The state table and the retry rule are ``banyan.states``; here they become
effects: a task made ready (a group task succeeds at once and releases its
continuations), a cascade of cancellations, a revival of that cascade when
its root is retried, the end of an attempt, a user's state change. Every
function takes plain typed values a store loaded and returns ``Change``s (one
task's new state, the column it sets, and its ``task.state`` event) or a
plan; the store applies them with its own statements, in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from banyan import events as ev
from banyan.dependencies import SKIPPED
from banyan.errors import Conflict
from banyan.states import (
    ACTIVE_STATES,
    CANCELLED_STATUS,
    SUCCESS,
    Actor,
    Effect,
    Outcome,
    State,
    after_abandonment,
    after_attempt,
    is_abandonment,
    transition,
)
from server.domain import events as build


@dataclass(frozen=True, slots=True)
class TaskRef:
    """What a state change needs to know of a task (and its event shows)."""

    id: str
    state: str
    name: str | None
    queue: str


class Kind(StrEnum):
    """How a change is written: each kind is one statement in a store."""

    AVAILABLE = "available"  # ready to be claimed
    GROUP_SUCCEEDED = "group_succeeded"  # a group task ends at once: terminated, success
    CANCELLED = "cancelled"  # ended before it ran; ``origin`` kept for a revival
    STOPPING = "stopping"  # pending_cancellation: the worker is told to stop it
    REVIVED = "revived"  # cancelled by a cascade that is undone: waits again (inactive)
    SKIPPED = "skipped"  # a run_when=failure task none of whose parents failed: not needed


_TARGET = {
    Kind.AVAILABLE: State.AVAILABLE,
    Kind.GROUP_SUCCEEDED: State.TERMINATED,
    Kind.CANCELLED: State.CANCELLED,
    Kind.STOPPING: State.PENDING_CANCELLATION,
    Kind.REVIVED: State.INACTIVE,
    Kind.SKIPPED: State.CANCELLED,
}
# The exit status a change records (the others record none).
_EXIT_STATUS = {Kind.GROUP_SUCCEEDED: SUCCESS, Kind.SKIPPED: SKIPPED}


@dataclass(frozen=True, slots=True)
class Change:
    """One task's state change: ``origin`` is the cancel origin a store keeps
    (CANCELLED, STOPPING), ``cause`` what the event names as the cascade's root."""

    kind: Kind
    task: TaskRef
    origin: str | None = None
    cause: str | None = None

    @property
    def state(self) -> State:
        return _TARGET[self.kind]

    @property
    def releases(self) -> bool:
        """A group task that succeeded releases its continuations in turn."""
        return self.kind is Kind.GROUP_SUCCEEDED

    @property
    def exit_status(self) -> str | None:
        return _EXIT_STATUS.get(self.kind)

    def event(self) -> ev.TaskState:
        t = self.task
        exit_status = self.exit_status
        return build.task_state(
            t.id,
            self.state,
            t.state,
            name=t.name,
            queue=t.queue,
            exit_status=exit_status,
            cause=self.cause,
        )


def events_of(changes: Iterable[Change]) -> list[ev.TaskState]:
    return [c.event() for c in changes]


# --- readiness -------------------------------------------------------------------


def activate(task: TaskRef, *, group: bool) -> Change:
    """A task whose dependencies are all met: claimable, or (a group task, no
    command) succeeded at once, which releases its own continuations."""
    return Change(Kind.GROUP_SUCCEEDED if group else Kind.AVAILABLE, task)


def ready_after_release(children: Iterable[tuple[str, int, str]]) -> list[str]:
    """``(id, pending count after the release, state)`` of a parent's
    continuations → those now ready (still inactive, no parent left)."""
    return [i for i, pending, state in children if pending == 0 and state == State.INACTIVE]


# --- cancellation ----------------------------------------------------------------


def cascade_cancel(found: Iterable[TaskRef], *, origin: str) -> list[Change]:
    """Cancel what has not started; ask a running task (downstream only if the
    graph was edited while it ran) to stop. Finished tasks stay as they are."""
    tasks = list(found)
    waiting = [t for t in tasks if t.state in (State.INACTIVE, State.AVAILABLE)]
    running = [t for t in tasks if t.state == State.RUNNING]
    return [Change(Kind.CANCELLED, t, origin=origin, cause=origin) for t in waiting] + [
        Change(Kind.STOPPING, t, origin=origin, cause=origin) for t in running
    ]


def skip(task: TaskRef) -> Change:
    """A ``failure`` task none of whose parents failed ends, not needed."""
    return Change(Kind.SKIPPED, task)


def revive(cancelled: Iterable[tuple[TaskRef, int]]) -> tuple[list[Change], list[str]]:
    """Undo a cascade: ``(task, pending count)`` of the tasks it cancelled that
    never ran → they wait again, and those with no parent left are ready."""
    rows = list(cancelled)
    changes = [Change(Kind.REVIVED, task) for task, _ in rows]
    return changes, [task.id for task, pending in rows if pending == 0]


# --- a user's state change (PATCH) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserChange:
    """What a user's state change does: ``effect`` None is a no-op."""

    effect: Effect | None
    change: Change | None = None  # REQUEST_CANCEL: the task itself, stopping


def cancel_means_stop(current: State, target: State) -> State:
    """``cancelled`` asked of a running task means "stop it" (pending_cancellation),
    as in the original Banyan (SPEC §4); of a task already stopping, nothing more."""
    if target is State.CANCELLED and current in ACTIVE_STATES:
        return State.PENDING_CANCELLATION
    return target


def user_change(
    task: TaskRef, target: State, *, pending: int, exit_status: str | None
) -> UserChange:
    """A provider's or admin's state change (SPEC §4); ``Conflict`` when it is
    not allowed now."""
    step = transition(State(task.state), cancel_means_stop(State(task.state), target), Actor.USER)
    if step is None:
        return UserChange(None)
    if step.effect in (Effect.ACTIVATE, Effect.RETRY) and pending > 0:
        raise Conflict(
            f"task {task.id} waits on {pending} parent task(s); it becomes available "
            "when they succeed"
        )
    if step.effect is Effect.RETRY and exit_status == SUCCESS:
        raise Conflict(
            f"task {task.id} succeeded; its continuations have been released, "
            "so it cannot be retried (submit a new task instead)"
        )
    if step.effect is Effect.REQUEST_CANCEL:
        return UserChange(step.effect, Change(Kind.STOPPING, task, origin=task.id))
    return UserChange(step.effect)


# --- the end of an attempt -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptEnd:
    """An attempt's end as a store applies it: the task's new state, whether a
    retry is counted, whether continuations are released or cancelled."""

    outcome: Outcome
    event: ev.TaskState


def end_attempt(
    task: TaskRef,
    *,
    attempt: int,
    retry_count: int,
    max_retry_count: int,
    exit_status: str,
    actor: Actor,
    undelivered: bool = False,
    abandon_count: int = 0,
    max_abandon_count: int = 0,
) -> AttemptEnd:
    """The retry rule applied to an ended attempt. ``undelivered``: the worker
    never got it (nothing ran), so a running task goes back to available
    without counting a retry. An abandonment (the worker died, was lost or
    stopped) follows the crash budget instead: ``abandon_count`` against
    ``max_abandon_count``, never ``max_retry_count``."""
    current = State(task.state)
    if is_abandonment(exit_status):
        outcome = after_abandonment(
            current=current,
            exit_status=exit_status,
            abandon_count=abandon_count,
            max_abandon_count=max_abandon_count,
        )
    else:
        outcome = after_attempt(
            current=current,
            exit_status=exit_status,
            retry_count=retry_count,
            max_retry_count=max_retry_count,
        )
    if undelivered and current is State.RUNNING:
        outcome = Outcome(State.AVAILABLE, retry=False, release=False, cascade_cancel=False)
    return _attempt_ended(task, current, outcome, actor, exit_status=exit_status, attempt=attempt)


def _attempt_ended(
    task: TaskRef,
    current: State,
    outcome: Outcome,
    actor: Actor,
    *,
    exit_status: str,
    attempt: int,
) -> AttemptEnd:
    """Check the move the end of an attempt makes and build its event."""
    transition(current, outcome.state, actor)
    event = build.task_state(
        task.id,
        outcome.state,
        task.state,
        name=task.name,
        queue=task.queue,
        exit_status=exit_status,
        attempt=attempt,
        retry=outcome.retry,
    )
    return AttemptEnd(outcome, event)


RETURNED = "returned (not started)"


def unqueued_status(state: str) -> str:
    """The exit status of a queued attempt that ends unstarted."""
    return CANCELLED_STATUS if state == State.PENDING_CANCELLATION else RETURNED


def unqueue(task: TaskRef, *, attempt: int) -> AttemptEnd:
    """A queued (prefetched) attempt that never started ends: nothing ran, so
    no retry and no abandonment is counted. A running task goes back to
    available; one asked to stop (pending_cancellation) is cancelled at once."""
    current = State(task.state)
    exit_status = unqueued_status(task.state)
    if current is State.PENDING_CANCELLATION:
        outcome = Outcome(State.CANCELLED, retry=False, release=False, cascade_cancel=True)
    else:
        outcome = Outcome(State.AVAILABLE, retry=False, release=False, cascade_cancel=False)
    return _attempt_ended(
        task, current, outcome, Actor.MONITOR, exit_status=exit_status, attempt=attempt
    )


def claimed(task: TaskRef, *, worker: str, attempt: int) -> ev.TaskState:
    """The event of a claim handing ``task`` out as ``attempt``."""
    return build.task_state(
        task.id,
        State.RUNNING,
        task.state,
        name=task.name,
        queue=task.queue,
        worker=worker,
        attempt=attempt,
    )


def waits_again(tasks: Sequence[TaskRef]) -> list[ev.TaskState]:
    """Available tasks that got a new parent wait for it (inactive)."""
    return [
        build.task_state(t.id, State.INACTIVE, t.state, name=t.name, queue=t.queue)
        for t in tasks
        if t.state != State.INACTIVE
    ]
