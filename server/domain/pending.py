"""Why a task is not running yet (``/tasks/{id}/pending_reason``).

Whether a worker has room for an available task is asked of the claim policy
itself: ``claims.reaches`` replays the claims that worker makes now, over the
available tasks ahead of this one in its claim order, so ``queued`` ("it
should start momentarily") is said only of a task the next claims hand out,
and a task whose room goes to tasks ahead of it is ``busy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from banyan.dates import format_date
from banyan.resources import Amounts, Resources, free_share
from banyan.states import State
from banyan.units import format_memory
from server.domain.claims import begun, fits_lifetime, reaches, would_claim

NOT_PENDING: Final = "not_pending"
HELD: Final = "held"
WAITING_ON_PARENTS: Final = "waiting_on_parents"
NO_WORKER_FOR_QUEUE: Final = "no_worker_for_queue"
INSUFFICIENT_RESOURCES: Final = "insufficient_resources"
BUSY: Final = "busy"
QUEUED: Final = "queued"
NOT_BEFORE: Final = "not_before"  # its begin time is still ahead
INSUFFICIENT_TIME: Final = "insufficient_time"  # no worker has enough remaining lifetime
# Worker states (as ``/workers`` shows them) that take claims.
SERVING_STATES: Final = ("idle", "busy")


@dataclass(frozen=True)
class PendingTask:
    """What the reason depends on, of a task."""

    state: State
    queue: str
    request: Resources
    pending_dependency_count: int = 0
    worker: str | None = None
    exit_status: str | None = None
    time_limit: float | None = None
    not_before: float | None = None
    now: float = 0.0


@dataclass(frozen=True)
class WorkerSeen:
    """A worker as the server sees it now: its state, what it offers and runs."""

    name: str
    state: str
    queues: Sequence[str]
    capacity: Resources
    running: Sequence[Resources] = field(default_factory=tuple)
    # The available tasks ahead of the asked-about one in this worker's claim
    # order (``claims.ORDER`` over its queues), and whether that is all of them.
    ahead: Sequence[Amounts] = field(default_factory=tuple)
    ahead_complete: bool = True
    remaining_s: float | None = None  # its remaining lifetime (--time-limit); None: none


def pending_reason(task: PendingTask, workers: Sequence[WorkerSeen]) -> tuple[str, str]:
    """``(code, reason)``: why ``task`` is not running."""
    state = task.state
    if state is State.INACTIVE:
        waiting = task.pending_dependency_count
        if waiting:
            return WAITING_ON_PARENTS, f"waiting on {waiting} parent task(s)"
        return HELD, "held: make it available to run"
    if state is State.RUNNING:
        return NOT_PENDING, f"running on worker {task.worker!r}"
    if state is State.PENDING_CANCELLATION:
        return NOT_PENDING, f"being cancelled on worker {task.worker!r}"
    if state is State.TERMINATED:
        return NOT_PENDING, f"terminated: {task.exit_status}"
    if state is State.CANCELLED:
        return NOT_PENDING, "cancelled"
    return _available(task, workers)


def _available(task: PendingTask, workers: Sequence[WorkerSeen]) -> tuple[str, str]:
    if not begun(task.not_before, task.now):
        return NOT_BEFORE, f"not before {format_date(task.not_before)}"
    queue = task.queue
    serving = [w for w in workers if queue in w.queues and w.state in SERVING_STATES]
    if not serving:
        draining = sum(1 for w in workers if queue in w.queues and w.state == "draining")
        note = f" ({draining} draining worker(s) do)" if draining else ""
        return NO_WORKER_FOR_QUEUE, f"no connected worker serves queue {queue!r}{note}"
    request = Amounts.of(task.request)
    able = [w for w in serving if would_claim(request, Amounts.of(w.capacity))]
    if not able:
        return INSUFFICIENT_RESOURCES, _shortfall(task.request, serving, queue)
    timely = [w for w in able if fits_lifetime(task.time_limit, w.remaining_s)]
    if not timely:
        most = max(w.remaining_s or 0.0 for w in able)
        return INSUFFICIENT_TIME, (
            f"its time limit is {_number(task.time_limit or 0.0)} s; no worker serving "
            f"{queue!r} that fits it has that much remaining time (the most: {most:.0f} s)"
        )
    able = timely
    roomy = 0  # workers with room for it, were it first in line
    for worker in able:
        free = free_share(worker.capacity, worker.running)
        if reaches(worker.ahead, request, free, complete=worker.ahead_complete):
            return QUEUED, f"worker {worker.name!r} has room for it: it should start momentarily"
        roomy += would_claim(request, free)
    if roomy:
        return BUSY, (
            f"{roomy} worker(s) serving {queue!r} have room for it, but tasks ahead of it in "
            "line (higher priority, or older) take that room first"
        )
    return BUSY, (
        f"{len(able)} worker(s) serving {queue!r} could run it, but none has enough free right now"
    )


def never_fits(queue: str, request: Resources, workers: Sequence[WorkerSeen]) -> str | None:
    """Why no connected worker could ever run a task asking ``request`` in
    ``queue`` (its whole CAPACITY, not what is free now, asked of the claim
    policy), or None when one could: the warning of a submit."""
    serving = [w for w in workers if queue in w.queues and w.state in SERVING_STATES]
    if not serving:
        return f"no connected worker serves queue {queue!r}"
    amounts = Amounts.of(request)
    if any(would_claim(amounts, Amounts.of(w.capacity)) for w in serving):
        return None
    return _shortfall(request, serving, queue)


def _number(value: float) -> str:
    return f"{value:g}"


def _shortfall(request: Resources, serving: Sequence[WorkerSeen], queue: str) -> str:
    """Which resource no worker serving ``queue`` has enough of, and the most one has."""
    capacities = [w.capacity for w in serving]
    wants: list[tuple[str, float, float]] = [
        ("cores", request.cores, max(c.cores for c in capacities)),
        ("memory", request.memory, max(c.memory for c in capacities)),
        ("GPUs", request.gpu_count, max(c.gpu_count for c in capacities)),
    ]
    for name, amount in request.custom.items():
        wants.append((name, amount, max(c.custom.get(name, 0.0) for c in capacities)))
    short = []
    for label, wanted, most in wants:
        if wanted > most:
            if label == "memory":
                short.append(
                    f"needs {format_memory(int(wanted))} of memory; the largest worker serving "
                    f"{queue!r} has {format_memory(int(most))}"
                )
            else:
                short.append(
                    f"needs {_number(wanted)} {label}; the largest worker serving {queue!r} "
                    f"has {_number(most)}"
                )
    if short:
        return "; ".join(short)
    return (
        f"no single worker serving {queue!r} has all it needs at once "
        f"({_number(request.cores)} cores, {format_memory(request.memory)} of memory, "
        f"{request.gpu_count} GPUs)"
    )
