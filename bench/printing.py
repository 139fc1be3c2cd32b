"""What a benchmark prints and hands to ``bench/all.py``: the machine
description, aligned tables, and the headline figures with their targets
(``--json PATH``: a :class:`Report`)."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import background_cores
from worker.cgroups import cgroup2_mountinfo

SHARED_CPU_NOTE = (
    "note: the load generator (this process, aiohttp client) and the server share the "
    "same {n} CPU(s); client CPU time is reported next to server CPU time"
)


def machine() -> list[tuple[str, str]]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    import aiohttp

    return [
        ("cpus (nproc)", f"{usable} (of {os.cpu_count()})"),
        ("cpu model", model),
        ("os", f"{platform.system()} {platform.release()}"),
        ("python", platform.python_version()),
        ("sqlite", sqlite3.sqlite_version),
        ("aiohttp", aiohttp.__version__),
        ("cgroup v2", _cgroup2()),
    ]


def _cgroup2() -> str:
    """Where the unified hierarchy is and whether a move between cgroups can
    wait for the kernel (see docs/guide/workers.rst, Containment)."""
    found = cgroup2_mountinfo()
    if found is None:
        return "none (workers use subreaper containment)"
    mount, options = found
    if "favordynmods" in options:
        return f"{mount}, favordynmods (moves never wait for an RCU grace period)"
    return f"{mount}, no favordynmods (the first spawn after an idle spell waits ~10 ms)"


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def print_machine(title: str) -> None:
    print(f"== {title}")
    rows = machine()
    rows.append(
        ("background load", f"{background_cores():.2f} CPUs busy with other processes (1 s sample)")
    )
    print_table(["machine", ""], rows)
    print(SHARED_CPU_NOTE.format(n=cpu_count()))
    print()


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # nan
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[fmt(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    numeric = [
        all(isinstance(row[i], int | float) for row in rows if i < len(row)) and bool(rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        out = []
        for i, v in enumerate(values):
            out.append(v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]))
        return "  ".join(out).rstrip()

    print(line(list(headers)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))


@dataclass
class Figure:
    """One headline number, with its target when the issues set one."""

    name: str
    value: float | None
    unit: str
    at_least: float | None = None
    at_most: float | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        """None when there is no target (or no value)."""
        if self.value is None or self.value != self.value:
            return None if self.at_least is None and self.at_most is None else False
        if self.at_least is not None:
            return self.value >= self.at_least
        if self.at_most is not None:
            return self.value <= self.at_most
        return None

    @property
    def target(self) -> str:
        if self.at_least is not None:
            return f">= {fmt(float(self.at_least))} {self.unit}"
        if self.at_most is not None:
            return f"<= {fmt(float(self.at_most))} {self.unit}"
        return ""


@dataclass
class Report:
    """The figures of one benchmark run, written as JSON for ``bench/all.py``."""

    benchmark: str
    quick: bool = False
    figures: list[Figure] = field(default_factory=list)

    def add(
        self,
        name: str,
        value: float | None,
        unit: str,
        *,
        at_least: float | None = None,
        at_most: float | None = None,
        note: str = "",
    ) -> None:
        number = None if value is None else float(value)
        self.figures.append(Figure(name, number, unit, at_least, at_most, note))

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "quick": self.quick,
            "machine": dict(machine()),
            "figures": [
                {
                    "name": f.name,
                    "value": None if f.value is None or f.value != f.value else f.value,
                    "unit": f.unit,
                    "at_least": f.at_least,
                    "at_most": f.at_most,
                    "met": f.met,
                    "note": f.note,
                }
                for f in self.figures
            ],
        }

    def write(self, path: Path | None) -> None:
        """Write the figures to ``path`` (``--json``); nothing when it is None."""
        if path is not None:
            Path(path).write_text(json.dumps(self.as_dict(), indent=2) + "\n")


def add_json_option(parser: Any) -> None:
    """``--json PATH``: where the benchmark writes its headline figures."""
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the headline figures (with targets) to PATH as JSON (bench/all.py)",
    )
