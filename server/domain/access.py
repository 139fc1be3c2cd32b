"""Who may change or report on which task: the authorization rules a store
checks inside its transaction, on values it loaded (reads are open to every
role; ``server.auth`` checks the role a route needs)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from banyan.errors import Conflict, Forbidden, PreconditionFailed, PreconditionRequired
from banyan.states import ACTIVE_STATES
from banyan.tokens import Caller, Role


def check_may_change(caller: Caller, task_id: str, owner: str) -> None:
    """Providers change only their own tasks; admins any."""
    if not caller.may_change(owner):
        raise Forbidden(f"task {task_id} belongs to {owner}: you may only change your own tasks")


def check_may_link_child(caller: Caller, child: str, owner: str) -> None:
    """A new task may name an existing task as its continuation only if the
    caller may change that task."""
    if not caller.may_change(owner):
        raise Forbidden(f"task {child} belongs to {owner}: you may only link your own tasks")


def check_may_edit_edge(caller: Caller, parent_owner: str, child_owner: str, *, link: bool) -> None:
    """Adding or removing a continuation needs both ends to be the caller's."""
    if not (caller.may_change(parent_owner) and caller.may_change(child_owner)):
        raise Forbidden(f"you may only {'link' if link else 'unlink'} tasks you own")


def check_if_match(task_id: str, etag: str, if_match: str | None, *, required: bool) -> None:
    """Optimistic concurrency: ``If-Match`` must name the current ``_etag``."""
    if if_match is not None and if_match.strip('"') != etag:
        raise PreconditionFailed(
            f"task {task_id} has changed: its _etag is {etag}, If-Match was {if_match}"
        )
    if if_match is None and required:
        raise PreconditionRequired("this server requires If-Match on every change")


# What an attempt runs with: fixed while it runs.
EXECUTION_FIELDS: Final = frozenset(
    {"command", "requested_resources", "queue", "env", "cwd", "max_termination_time", "time_limit"}
)


def check_editable(task_id: str, state: str, changes: Iterable[str]) -> None:
    """A running (or stopping) task's execution fields cannot change."""
    frozen = sorted(EXECUTION_FIELDS.intersection(changes))
    if frozen and state in ACTIVE_STATES:
        raise Conflict(
            f"task {task_id} is {state}: {', '.join(frozen)} cannot change while it runs",
            issues={f: f"cannot change while the task is {state}" for f in frozen},
        )


@dataclass(frozen=True, slots=True)
class CurrentAttempt:
    """A task's current attempt as loaded for a report on it."""

    task_id: str
    attempt: int
    execution_key: str | None  # None: the task has no attempt
    token: str | None  # the worker token that claimed it
    worker: str | None  # the worker name that holds it
    # Which attempt of this task the reported key named when it is not the
    # current one (None: no attempt ever had it); the store loads it only
    # after :func:`names_current` said no.
    key_attempt: int | None = None


def names_current(current: CurrentAttempt, execution_key: str) -> bool:
    """Whether ``execution_key`` is the current attempt's (in constant time)."""
    return current.execution_key is not None and secrets.compare_digest(
        current.execution_key, execution_key
    )


def check_report(
    current: CurrentAttempt, execution_key: str, caller: Caller, worker: str | None = None
) -> None:
    """A report names the current attempt by its key, and comes from the token
    (and, from the gateway, the connected ``worker``) that holds it."""
    task_id = current.task_id
    if current.execution_key is None:
        raise Conflict(f"task {task_id} has no attempt to report on")
    if not names_current(current, execution_key):
        if current.key_attempt is None:
            raise Conflict(
                f"this execution_key does not belong to any attempt of task {task_id}; "
                "this report is refused"
            )
        raise Conflict(
            f"attempt {current.key_attempt} of task {task_id} was superseded "
            f"(the task is now on attempt {current.attempt}); this report is refused"
        )
    if (caller.role is Role.WORKER and current.token != caller.name) or (
        worker is not None and current.worker != worker
    ):
        raise Forbidden(f"task {task_id}'s attempt is held by another worker")


def check_usage_report(caller: Caller, task_id: str, state: str, token: str | None) -> None:
    """A worker reports memory only for a task whose running attempt it holds."""
    if caller.role is Role.WORKER and (token != caller.name or state not in ACTIVE_STATES):
        raise Forbidden(f"task {task_id} is not running on this worker")
