"""Words for what the API returns, shared by every front end (the CLI, the
TUI, scripts): ages and durations, memory, resources, a task's outcome and
its status (its state, with a terminated task split by its exit status).

Plain strings only: how they are styled is each front end's business.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from banyan.dates import parse_date
from banyan.units import format_duration, format_memory


def age_s(date: str | None, *, now_s: float | None = None) -> float | None:
    """Seconds since an API date, or None if absent or unreadable."""
    if not date:
        return None
    try:
        then = parse_date(date)
    except ValueError:
        return None
    return max(0.0, (time.time() if now_s is None else now_s) - then)


def short_duration(seconds: float | None) -> str:
    """``"42s"``, ``"5m"``, ``"3h"``, ``"2d"``: an age in its largest unit."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for suffix, unit in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= unit:
            return f"{int(seconds // unit)}{suffix}"
    return f"{int(seconds)}s"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return format_duration(round(max(0.0, seconds), 3))


def between(start: str | None, end: str | None) -> float | None:
    """Seconds from ``start`` to ``end`` (two API dates), if both are readable."""
    if not start or not end:
        return None
    try:
        return max(0.0, parse_date(end) - parse_date(start))
    except ValueError:
        return None


def memory(n_bytes: Any) -> str:
    if isinstance(n_bytes, int) and not isinstance(n_bytes, bool) and n_bytes >= 0:
        return format_memory(n_bytes)
    return "-" if n_bytes is None else str(n_bytes)


def number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return "-" if value is None else str(value)


def gpu_count(value: Any) -> int:
    if isinstance(value, list):
        return len(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    return 0


def resources(requested: Mapping[str, Any] | None) -> str:
    """``"2 cores, 4 GiB, 1 GPU, licences=1"``."""
    req = dict(requested or {})
    cores = req.pop("cores", 1)
    parts = [f"{number(cores)} core{'s' if cores != 1 else ''}"]
    mem = req.pop("memory", 0)
    if mem:
        parts.append(memory(mem))
    gpus = gpu_count(req.pop("gpus", 0))
    if gpus:
        parts.append(f"{gpus} GPU{'s' if gpus != 1 else ''}")
    parts += [f"{key}={number(value)}" for key, value in sorted(req.items())]
    return ", ".join(parts)


def outcome(task: Mapping[str, Any]) -> str:
    """``"success"``, ``"failed"``, ``"cancelled"`` or ``"pending"`` (not ended yet)."""
    state = task.get("state")
    if state == "cancelled":
        return "cancelled"
    if state == "terminated":
        status = (task.get("execution") or {}).get("exit_status")
        return "success" if status == "success" else "failed"
    return "pending"


# A task's status: its state, with a terminated task split by its exit status.
STATUSES = ("running", "cancelling", "available", "inactive", "failed", "cancelled", "success")


def status_of(state: str, exit_status: str | None = None) -> str:
    """One of ``STATUSES`` (a terminated task without an exit status counts as
    a success; an unknown state as inactive)."""
    if state == "terminated":
        return "success" if exit_status in (None, "success") else "failed"
    if state == "pending_cancellation":
        return "cancelling"
    return state if state in STATUSES else "inactive"
