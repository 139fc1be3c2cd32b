"""The claim policy: which available tasks a worker's free share gets, and in
which order. One home for it: the stores ask ``pack`` which of the candidates
they loaded to hand out, and the pending reasons (``server.domain.pending``)
ask the same function whether a task would be handed out now.

Order: highest ``priority`` first, then the oldest (task ids grow with
creation time, so the id breaks ties). A store loads candidates in
``ORDER``, from the claim's queues, at most ``scan_limit(limit)`` of them,
and may leave out early any task whose cores, memory or GPU count exceed the
whole free share (``prefilter``): ``pack`` then skips what does not fit and
packs greedily, custom resources and fractional cores included.

Time, too, decides (issue 13), before any packing: a task whose
``not_before`` is still ahead is not handed out, and a worker with a
remaining lifetime (``banyan-worker --time-limit``, as in a batch
allocation) gets only tasks whose ``time_limit`` fits in it. As in
HyperQueue (``--time-request`` on tasks, ``--time-limit`` on workers), a task
without a limit may go to any worker: it asks for no time, and is stopped with
the worker if it outlives it. Stores apply these bounds in their candidate
query (``time_bounds``); ``begun`` and ``fits_lifetime`` are the same rules
for code that asks one task at a time (the pending reasons).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Final, TypeVar

from banyan.resources import Amounts

T = TypeVar("T")

# How many candidates one claim looks at per task it may hand out: enough to
# skip over tasks that do not fit without scanning the whole queue.
SCAN_FACTOR: Final = 8
# What ORDER means, for stores that sort in code: priority desc, then id asc.
ORDER: Final = "priority DESC, id"
# The claim limit a worker sends (``worker.agent``'s default ``claim_limit``):
# the pending reasons simulate claims of this size.
WORKER_CLAIM_LIMIT: Final = 32
# How many tasks ahead in line a pending reason looks at; past that, it
# never promises a start.
AHEAD_LIMIT: Final = 4096


def order_key(priority: int, task_id: str) -> tuple[int, str]:
    """The sort key of ``ORDER`` (for a store that sorts in code)."""
    return (-priority, task_id)


def scan_limit(limit: int) -> int:
    return max(0, limit) * SCAN_FACTOR


def prefilter(free: Amounts) -> Amounts:
    """Bounds a store may apply before loading: nothing larger than the whole
    free share in cores (with rounding slack), memory or GPUs can fit."""
    return Amounts(free.cores + 1e-9, free.memory, free.gpus)


def pack(
    candidates: Iterable[T], free: Amounts, limit: int, request_of: Callable[[T], Amounts]
) -> list[T]:
    """The candidates (already in ``ORDER``) to hand out: each that fits what is
    still free is taken, until ``limit`` are or no core is left."""
    chosen: list[T] = []
    if limit <= 0:
        return chosen
    for candidate in candidates:
        request = request_of(candidate)
        if not request.fits_in(free):
            continue
        free = free.minus(request)
        chosen.append(candidate)
        if len(chosen) == limit or free.no_cores_left:
            break
    return chosen


def pack_queued(
    candidates: Iterable[T], capacity: Amounts, depth: int, request_of: Callable[[T], Amounts]
) -> list[T]:
    """Prefetch: the candidates (in ``ORDER``) a worker holds queued, each
    fitting its whole ``capacity`` on its own (it starts when a slot frees),
    up to ``depth`` of them."""
    chosen: list[T] = []
    if depth <= 0:
        return chosen
    for candidate in candidates:
        if request_of(candidate).fits_in(capacity):
            chosen.append(candidate)
            if len(chosen) == depth:
                break
    return chosen


def prefetch_depth(*, asked: int, max_prefetch: int, others_idle: bool) -> int:
    """How many attempts a claim may hand out queued: none while another
    worker serving the same queues has a free slot (it should start them now),
    else what the worker asked for, up to the server's ``max_prefetch``."""
    if others_idle:
        return 0
    return max(0, min(asked, max_prefetch))


def begun(not_before: float | None, now: float) -> bool:
    """Whether a task's begin time has come."""
    return not_before is None or not_before <= now


def fits_lifetime(time_limit: float | None, remaining_s: float | None) -> bool:
    """Whether a task's ``time_limit`` fits in a worker's remaining lifetime
    (``None``: the worker has none, or the task asks for no time)."""
    return time_limit is None or remaining_s is None or time_limit <= remaining_s


def time_bounds(now: float, remaining_s: float | None) -> tuple[float, float | None]:
    """The candidate query's time parameters: begin times up to ``now``, time
    limits up to ``remaining_s`` (``None``: any)."""
    return now, remaining_s


def would_claim(request: Amounts, free: Amounts) -> bool:
    """Whether a claim with ``free`` would hand out a task asking ``request``
    (were it first in line): the pending reason's test."""
    return bool(pack([request], free, 1, lambda r: r))


def reaches(
    ahead: Sequence[Amounts],
    request: Amounts,
    free: Amounts,
    *,
    limit: int = WORKER_CLAIM_LIMIT,
    complete: bool = True,
) -> bool:
    """Whether a worker with ``free`` gets the task asking ``request`` now,
    behind the available tasks ``ahead`` of it in ``ORDER`` from its queues.

    This replays what the claim path does (the pending reason's test, so
    "queued" and the next claims agree): each claim sees the first
    ``scan_limit(limit)`` tasks that pass ``prefilter`` of what is still
    free and packs up to ``limit`` of them; the worker claims again while an
    answer hands out anything (``worker.agent``). ``complete=False``: more
    tasks are ahead than ``ahead`` holds, so a start is never promised."""
    line = [*ahead, request]
    me = len(ahead)
    remaining = list(range(len(line)))
    while remaining:
        bound = prefilter(free)
        window = [
            i
            for i in remaining
            if line[i].cores <= bound.cores
            and line[i].memory <= bound.memory
            and line[i].gpus <= bound.gpus
        ][: scan_limit(limit)]
        chosen = pack(window, free, limit, lambda i: line[i])
        if not chosen:
            return False
        if me in chosen:
            return complete
        for i in chosen:
            free = free.minus(line[i])
        taken = set(chosen)
        remaining = [i for i in remaining if i not in taken]
    return False
