"""State → glyph, label and style, and the load bars of the workers view."""

from __future__ import annotations

from banyan.client.format import STATUSES, status_of
from tui.state.records import Worker

__all__ = ["STATUSES", "status_of"]


STATUS_LOOK: dict[str, tuple[str, str, str]] = {
    # status: (glyph, short label, style)
    "inactive": ("◌", "inactive", "dim"),
    "available": ("○", "available", "cyan"),
    "running": ("▶", "running", "bold yellow"),
    "cancelling": ("◍", "cancelling", "magenta"),
    "success": ("✔", "success", "green"),
    "failed": ("✘", "failed", "bold red"),
    "cancelled": ("⊘", "cancelled", "red"),
}


STATUS_RANK = {status: rank for rank, status in enumerate(STATUSES)}


def look(status: str) -> tuple[str, str, str]:
    return STATUS_LOOK.get(status, ("?", status, ""))


def load_style(fraction: float) -> str:
    """Colour of a load bar: green, then yellow from 70 %, red from 90 %."""
    if fraction >= 0.9:
        return "red"
    if fraction >= 0.7:
        return "yellow"
    return "green"


def bar(fraction: float, width: int) -> str:
    """``"████▌   "``: a bar ``width`` cells wide, in eighths."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + ("" if part == 0 else " ▏▎▍▌▋▊▉"[part])
    return text.ljust(width)


def heartbeat_level(worker: Worker, now: float, interval_s: float) -> str:
    """``"ok"``, ``"warn"`` (silent past the heartbeat interval, with half an
    interval's grace for jitter) or ``"error"`` (lost)."""
    if worker.state == "lost":
        return "error"
    if worker.state == "left" or worker.last_heartbeat is None:
        return "ok" if worker.state == "left" else "warn"
    return "warn" if now - worker.last_heartbeat > interval_s * 1.5 else "ok"


# Heartbeat intervals of silence after which a connected worker shows as
# unresponsive (as ``GET /workers`` flags it), before the server declares it lost.
UNRESPONSIVE_HEARTBEATS = 2
_CONNECTED_STATES = ("idle", "busy", "draining", "disconnected")


def unresponsive(worker: Worker, now: float, interval_s: float) -> bool:
    """A worker not heard from for two heartbeat intervals that is not lost yet:
    the tasks it runs may not be running."""
    if worker.state not in _CONNECTED_STATES or worker.last_heartbeat is None:
        return False
    return now - worker.last_heartbeat > UNRESPONSIVE_HEARTBEATS * interval_s
