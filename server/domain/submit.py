"""Rules of a submission (``POST /tasks``) and of a task's fields, shared by
every store: which fields a PATCH sets as they are, which state each new task
starts in, that an existing continuation has not started, and that the new
tasks' continuations form no cycle."""

from __future__ import annotations

from collections import defaultdict
from typing import Final

from banyan.errors import Conflict, InvalidInput
from banyan.models import TaskCreate
from banyan.states import State

# Fields that shape how the next attempt runs: frozen while one is running;
# a PATCH writes them as given.
PLAIN_FIELDS: Final = (
    "name",
    "command",
    "queue",
    "priority",
    "max_retry_count",
    "max_termination_time",
    "estimated_runtime",
    "cwd",
    "time_limit",
    "not_before",
    "max_abandon_count",
)


def initial_state(item: TaskCreate, pending: int) -> tuple[State, bool]:
    """The state a new task is inserted in, and whether it is a group task
    that is ready (inserted inactive, then succeeds at once)."""
    if item.state == State.AVAILABLE and pending == 0:
        if item.command is None:
            return State.INACTIVE, True
        return State.AVAILABLE, False
    return State.INACTIVE, False


def check_new_continuation(child: str, state: str) -> None:
    """Only a task that has not started can become a continuation."""
    if state not in (State.INACTIVE, State.AVAILABLE):
        raise Conflict(
            f"task {child} is {state}: only a task that has not started can be a continuation"
        )


def check_acyclic(edges: list[tuple[str, str]], index: dict[str, int]) -> None:
    """Kahn's algorithm over the edges between new tasks (existing tasks
    cannot point at new ones, so any cycle lies within the request)."""
    children: dict[str, list[str]] = defaultdict(list)
    indegree: dict[str, int] = defaultdict(int)
    for parent, child in edges:
        children[parent].append(child)
        indegree[child] += 1
    queue = [n for n in {p for p, _ in edges} if indegree[n] == 0]
    seen = 0
    while queue:
        node = queue.pop()
        seen += 1
        for child in children[node]:
            indegree[child] -= 1
            if indegree[child] == 0:
                queue.append(child)
    nodes = {n for edge in edges for n in edge}
    if seen < len(nodes):
        stuck = sorted((n for n in nodes if indegree[n] > 0), key=index.__getitem__)[0]
        raise InvalidInput(
            "continuations form a cycle",
            issues={f"{index[stuck]}.continuations": "continuations must not form a cycle"},
        )
