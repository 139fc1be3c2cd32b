"""Why pending, for many tasks at once: the ``_pending_reason`` of each item
of a ``GET /tasks?reasons=1`` page (one round trip for a whole page, as
``squeue`` prints a reason per line), and the ``_warnings`` of a ``POST
/tasks`` whose tasks no connected worker could ever run (``?require_fit=1``
refuses them instead). The rules are ``server.domain.pending``'s; the
workers and their live states are read once per request, or for the
warnings of a submit, reused while current (see :class:`FitView`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from banyan.errors import InvalidInput
from banyan.models import TaskCreate
from banyan.states import ACTIVE_STATES, State
from server.domain.pending import WorkerSeen, never_fits, never_in_time
from server.keys import GATEWAY, STORE
from server.views.stats import (
    QUIET_NOTE,
    explain_seen,
    quiet_names,
    seen_workers,
    with_ahead,
    with_states,
    workers_seen,
)
from server.views.workers import read_workers

# How long the workers read for one submit's warnings serve the next ones.
FIT_VIEW_TTL_S = 0.5


class FitView:
    """The workers as the last submit's warnings saw them, while current.

    Reading every worker (and its running attempts) for each ``POST /tasks``
    cost a reader-thread hop per request, and with 300 connected workers
    ~8 ms of server CPU per request (100 POSTs/s). The view is read again
    when a worker of this server joined, left or started or stopped
    draining since, and at least every ``FIT_VIEW_TTL_S`` (the remaining
    lifetimes, and the workers of other servers on a shared store). A
    ``require_fit`` refusal is only ever made from a fresh read."""

    def __init__(self) -> None:
        self._seen: list[WorkerSeen] = []
        self._read_at = -FIT_VIEW_TTL_S
        self._changes = -1

    async def workers(self, request: web.Request, *, fresh: bool) -> tuple[list[WorkerSeen], bool]:
        """The workers, and whether they were read just now."""
        changes = request.app[GATEWAY].sessions.changes
        current = changes == self._changes and time.monotonic() - self._read_at < FIT_VIEW_TTL_S
        if current and not fresh:
            return self._seen, False
        self._seen = await workers_seen(request)
        self._read_at, self._changes = time.monotonic(), changes
        return self._seen, True


FIT_VIEW = web.AppKey("fit_view", FitView)


async def add_reasons(
    request: web.Request, docs: Sequence[dict[str, Any]], items: Sequence[dict[str, Any]]
) -> None:
    """Set ``_pending_reason`` (``{"code", "reason"}``) on each rendered item
    from its stored document, as ``/tasks/{id}/pending_reason`` gives it (the
    tasks ahead in line, a quiet worker's note); the workers are read once,
    and only if a task is available or active."""
    needs_workers = any(d["state"] == State.AVAILABLE or d["state"] in ACTIVE_STATES for d in docs)
    found = await read_workers(request) if needs_workers else []
    seen = seen_workers(with_states(request, found))
    quiet = quiet_names(request, found)
    store = request.app[STORE]
    for doc, item in zip(docs, items, strict=True):
        code, reason = explain_seen(doc, await with_ahead(store, doc, seen))
        worker = (doc.get("execution") or {}).get("worker")
        if doc["state"] in ACTIVE_STATES and worker in quiet:
            reason += QUIET_NOTE
        item["_pending_reason"] = {"code": code, "reason": reason}


async def fit_warnings(
    request: web.Request, items: Sequence[TaskCreate], *, single: bool, refuse: bool
) -> list[str]:
    """One line per distinct (queue, request, time limit) that no connected
    worker could ever fit, or outlive (``never_in_time``: its remaining
    lifetime); with ``refuse``, ``InvalidInput`` naming the items instead.
    Group tasks (no command) need no worker."""
    runnable = [(i, t) for i, t in enumerate(items) if t.command is not None]
    if not runnable:
        return []
    view = request.app[FIT_VIEW]
    seen, fresh = await view.workers(request, fresh=False)
    problems = _problems(runnable, seen)
    if refuse and not fresh and any(problem is not None for _, problem, _ in problems.values()):
        seen, _ = await view.workers(request, fresh=True)  # refuse only on what is true now
        problems = _problems(runnable, seen)
    warnings: list[str] = []
    issues: dict[str, str] = {}
    for at, problem, indexes in problems.values():
        if problem is None:
            continue
        who = "" if single else f"{len(indexes)} task(s): "
        warnings.append(f"{who}no connected worker could ever fit it: {problem}")
        for index in indexes:
            issues[at if single else f"{index}.{at}"] = problem
    if warnings and refuse:
        raise InvalidInput("refused (require_fit): " + "; ".join(warnings), issues=issues)
    return [f"{w}; it will wait for one" for w in warnings]


Problems = dict[tuple[str, str, float | None], tuple[str, str | None, list[int]]]


def _problems(runnable: Sequence[tuple[int, TaskCreate]], seen: Sequence[WorkerSeen]) -> Problems:
    """(queue, request, time limit) → (the field at fault, why or None, the
    indexes of the items asking it)."""
    problems: Problems = {}
    # A bulk list shares one object per distinct item (``validate_items``):
    # its key is made once per object, not once per place in the list.
    keys: dict[int, tuple[str, str, float | None]] = {}
    for index, item in runnable:
        wanted = item.requested_resources
        key = keys.get(id(item))
        if key is None:
            key = keys[id(item)] = (item.queue, wanted.model_dump_json(), item.time_limit)
        if key not in problems:
            problem = never_fits(item.queue, wanted, seen)
            if problem is not None:
                problems[key] = ("requested_resources", problem, [])
            else:
                late = never_in_time(item.queue, wanted, item.time_limit, seen)
                problems[key] = ("time_limit", late, [])
        problems[key][2].append(index)
    return problems
