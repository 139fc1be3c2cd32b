"""The queues view's rows: counts by state, throughput and the oldest wait per queue."""

from __future__ import annotations

from dataclasses import dataclass

from tui.state.model import FINISHED_WINDOWS_S, Model


@dataclass(frozen=True)
class QueueRow:
    name: str
    waiting: int  # inactive
    available: int
    running: int  # running + pending_cancellation
    terminated: int
    cancelled: int
    done_1m: int
    oldest_waiting_s: float | None


def queue_rows(model: Model, now: float) -> list[QueueRow]:
    oldest = dict(model.oldest_available)
    if not model.counts_from_server:
        for task in model.tasks.values():
            if task.state == "available":
                known = oldest.get(task.queue)
                oldest[task.queue] = task.created if known is None else min(known, task.created)
    names = sorted(set(model.queue_counts) | set(model.done))
    rows = []
    for name in names:
        c = model.queue_counts.get(name, {})
        since = oldest.get(name)
        rows.append(
            QueueRow(
                name=name,
                waiting=c.get("inactive", 0),
                available=c.get("available", 0),
                running=c.get("running", 0) + c.get("pending_cancellation", 0),
                terminated=c.get("terminated", 0),
                cancelled=c.get("cancelled", 0),
                done_1m=model.done_last_minute(name, now),
                oldest_waiting_s=None if since is None or not c.get("available") else now - since,
            )
        )
    return rows


def finished_note(model: Model, now: float) -> str:
    """``finished 1m 11 · 5m 40 · 15m ≥97``: the DONE/1m column's count over every queue
    and longer windows (one computation, ``Model.finished``); "≥" until the feed has been
    followed for the whole window."""
    parts = []
    for label, span in FINISHED_WINDOWS_S.items():
        bound = "" if model.watched_for(span, now) else "≥"
        parts.append(f"{label} {bound}{model.finished(now, span):,}")
    return "finished " + " · ".join(parts)
