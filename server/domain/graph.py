"""The continuation graph's rules: who may link or unlink two tasks, and
when, and what an edge's removal does to the child's count of parents."""

from __future__ import annotations

from dataclasses import dataclass

from banyan.errors import Conflict
from banyan.states import State
from banyan.tokens import Caller
from server.domain import access


@dataclass(frozen=True, slots=True)
class End:
    """One end of an edge, as loaded."""

    id: str
    state: str
    owner: str
    exit_status: str | None = None


def check_link(parent: End, child: End, caller: Caller) -> None:
    """Making ``child`` wait on ``parent``: both the caller's, the child not
    started (a cycle is the store's to find). A parent that has already ended
    is linked too: its outcome decides the edge at once
    (``server.domain.dependencies``), so the link is never lost."""
    access.check_may_edit_edge(caller, parent.owner, child.owner, link=True)
    if child.state not in (State.INACTIVE, State.AVAILABLE):
        raise Conflict(
            f"task {child.id} is {child.state}: only a task that has not started can wait"
        )


def check_unlink(parent: End, child: End, caller: Caller) -> None:
    """Removing an edge: both ends the caller's."""
    access.check_may_edit_edge(caller, parent.owner, child.owner, link=False)


def check_unlinked_child(child: End) -> None:
    """An edge that existed is removed only while its child waits (inactive)."""
    if child.state != State.INACTIVE:
        raise Conflict(
            f"task {child.id} is {child.state}: continuations are removed while inactive"
        )


def unlink_counts_down(*, released: bool) -> bool:
    """Whether removing the edge leaves the child one parent less to wait on:
    not when the edge was already released (the parent succeeded, or ended
    for a ``finished``/``failure`` child): it was counted down then."""
    return not released
