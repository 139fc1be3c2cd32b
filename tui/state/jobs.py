"""The Jobs view's rows: the loaded tasks grouped by job (one ``POST
/tasks``: an array, a bulk submit, a single task), each with its name,
owner, counts by state and time span. Pure: built from the model, which the
event feed keeps live."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tui.state.records import Task

PENDING = ("inactive", "available")
RUNNING = ("running", "cancelling")


@dataclass
class JobRow:
    id: str
    name: str
    owner: str
    counts: dict[str, int] = field(default_factory=dict)  # by status (``STATUSES``)
    created: float = 0.0
    started: float | None = None
    ended: float | None = None  # the last end, once every task has ended

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> bool:
        return all(k not in PENDING and k not in RUNNING for k in self.counts)

    def span_s(self, now: float) -> float | None:
        """From the first start to the last end (or now, while it runs)."""
        if self.started is None:
            return None
        return (self.ended if self.done and self.ended is not None else now) - self.started


def job_rows(tasks: Iterable[Task], names: Mapping[str, str] | None = None) -> list[JobRow]:
    """One row per job among ``tasks``, newest first. The name is ``names``'
    (the server's), else the job's first task's (its id is the job's), else
    any of its tasks' label."""
    rows: dict[str, JobRow] = {}
    for task in tasks:
        if task.job is None:
            continue
        row = rows.get(task.job)
        if row is None:
            row = rows[task.job] = JobRow(
                id=task.job, name=task.label, owner=task.owner or "-", created=task.created
            )
        if task.id == task.job:
            row.name = task.label
        row.counts[task.status] = row.counts.get(task.status, 0) + 1
        row.created = min(row.created, task.created)
        if task.started is not None:
            row.started = task.started if row.started is None else min(row.started, task.started)
        if task.ended is not None:
            row.ended = task.ended if row.ended is None else max(row.ended, task.ended)
    for row in rows.values():
        row.name = (names or {}).get(row.id, row.name)
    return sorted(rows.values(), key=lambda r: r.id, reverse=True)
