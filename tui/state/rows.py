"""Which rows the task table holds, and how to get there from what it holds
(a ``RowPlan``), kept up to date from each batch's changed ids."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

from tui.state.filters import VOLATILE_SORT_KEYS, Filter, Sort, SortKey, matches, sort_key
from tui.state.model import Model


@dataclass
class RowPlan:
    """How to take the table from the rows it holds to the ones it should."""

    remove: list[str] = field(default_factory=list)
    add: list[str] = field(default_factory=list)
    update: list[str] = field(default_factory=list)
    order: list[str] | None = None  # the full order, when rows must move
    reset: bool = False  # rebuild: a new filter or sort

    def __bool__(self) -> bool:
        return bool(self.remove or self.add or self.update or self.order or self.reset)


class TaskView:
    """The task table's rows: the first ``limit`` tasks matching ``filter`` in
    ``sort`` order. ``matching`` is kept up to date from each batch's changed
    ids, so neither a batch nor the "N of M" note rescans every task."""

    def __init__(self, *, limit: int = 1000) -> None:
        self.limit = limit
        self.filter = Filter()
        self.sort = Sort()
        self.matching: set[str] = set()
        self.shown: list[str] = []
        self.short = False  # fewer rows than could be shown: refill later

    def _ranked(self, model: Model, ids: Iterable[str], limit: int) -> list[str]:
        key = sort_key(self.sort)
        tasks = model.tasks

        def rank(task_id: str) -> SortKey:
            return key(tasks[task_id])

        pick = heapq.nlargest if self.sort.descending else heapq.nsmallest
        return pick(limit, ids, key=rank)

    def reset(self, model: Model) -> RowPlan:
        """Everything again (a new filter, sort or snapshot)."""
        if self.filter:
            self.matching = {i for i, t in model.tasks.items() if matches(self.filter, t)}
        else:
            self.matching = set(model.tasks)
        self.shown = self._ranked(model, self.matching, self.limit)
        self.short = False
        return RowPlan(add=list(self.shown), order=list(self.shown), reset=True)

    def changed(self, model: Model, ids: Iterable[str]) -> RowPlan:
        plan = RowPlan()
        shown = set(self.shown)
        gone: set[str] = set()
        candidates = []
        for task_id in ids:
            task = model.tasks.get(task_id)
            ok = task is not None and matches(self.filter, task)
            if ok:
                self.matching.add(task_id)
            else:
                self.matching.discard(task_id)
            if task_id in shown:
                if ok:
                    plan.update.append(task_id)
                else:
                    gone.add(task_id)
            elif ok:
                candidates.append(task_id)
        kept = [i for i in self.shown if i not in gone]
        moved = bool(plan.update) and self.sort.key in VOLATILE_SORT_KEYS
        if candidates or moved:
            merged = self._ranked(model, kept + candidates, len(kept) + len(candidates))
            wanted = merged[: self.limit]
            cut = set(merged[self.limit :])
            gone |= cut & shown
            fresh = set(candidates)
            plan.add = [i for i in wanted if i in fresh]
            appended = [i for i in kept if i not in cut] + plan.add
            if appended != wanted:
                plan.order = wanted
            self.shown = wanted
        else:
            self.shown = kept
        plan.remove = sorted(gone & shown)
        plan.update = [i for i in plan.update if i not in gone]
        self.short = len(self.shown) < min(self.limit, len(self.matching))
        return plan

    def refill(self, model: Model) -> RowPlan:
        """Top the table up after rows left it (they no longer match)."""
        wanted = self._ranked(model, self.matching, self.limit)
        shown = set(self.shown)
        fresh = set(wanted)
        plan = RowPlan(
            remove=[i for i in self.shown if i not in fresh],
            add=[i for i in wanted if i not in shown],
        )
        if [i for i in self.shown if i in fresh] + plan.add != wanted:
            plan.order = wanted
        self.shown = wanted
        self.short = False
        return plan

    def forget_missing(self, model: Model) -> None:
        self.matching &= set(model.tasks)
