"""What the ``banyan`` CLI prints: rich tables for people, JSON for scripts,
and the small formatters (ages, resources, states) every command shares.

Commands never call ``print`` for results: they hand data to an ``Output``,
which writes JSON under ``--json`` and a rich rendering otherwise. Errors go
to stderr as one line (``banyan: <message>``), written by ``banyan.cli``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from banyan.dates import parse_date
from banyan.units import format_duration, format_memory

# Piped output is read by people too (``banyan ls | less``): do not wrap at 80.
PIPE_WIDTH = 200

STATE_STYLES: dict[str, str] = {
    "inactive": "dim",
    "available": "cyan",
    "running": "bold yellow",
    "pending_cancellation": "magenta",
    "cancelled": "red",
    "terminated": "green",
}


class Output:
    """Where one CLI invocation writes its results."""

    def __init__(self, *, json_mode: bool, file: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.file = file if file is not None else sys.stdout
        self.is_terminal = self.file.isatty()
        self.console = Console(
            file=self.file,
            highlight=False,
            soft_wrap=False,
            width=None if self.is_terminal else PIPE_WIDTH,
        )

    def json(self, data: Any) -> None:
        """One JSON document (indented for a terminal, compact for a pipe)."""
        indent = 2 if self.is_terminal else None
        self.file.write(json.dumps(data, indent=indent, ensure_ascii=False) + "\n")
        self.file.flush()

    def json_line(self, data: Any) -> None:
        self.file.write(json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n")
        self.file.flush()

    def line(self, text: str) -> None:
        """Plain text, never styled (ids that scripts capture)."""
        self.file.write(text + "\n")
        self.file.flush()

    def show(self, *renderables: RenderableType) -> None:
        self.console.print(*renderables)


# --- formatters --------------------------------------------------------------


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


def state_text(state: str | None, exit_status: str | None = None) -> Text:
    """A task's state, coloured; a terminated task shows its exit status instead."""
    if state is None:
        return Text("-")
    if state == "terminated" and exit_status:
        style = "green" if exit_status == "success" else "bold red"
        return Text(exit_status, style=style)
    return Text(state, style=STATE_STYLES.get(state, ""))


def outcome(task: Mapping[str, Any]) -> str:
    """``"success"``, ``"failed"``, ``"cancelled"`` or ``"pending"`` (not ended yet)."""
    state = task.get("state")
    if state == "cancelled":
        return "cancelled"
    if state == "terminated":
        status = (task.get("execution") or {}).get("exit_status")
        return "success" if status == "success" else "failed"
    return "pending"


def key_value_table(
    rows: Sequence[tuple[str, RenderableType]], *, title: str | None = None
) -> Table:
    table = Table(show_header=False, box=None, title=title, title_justify="left", pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    return table


def warn(message: str) -> None:
    """One line on stderr, as every CLI error is written."""
    sys.stderr.write(f"banyan: {message}\n")
    sys.stderr.flush()
