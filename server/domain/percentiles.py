"""Nearest-rank percentiles of weighted durations, as ``GET /stats`` reports
the wait and run times of attempts (every store sums its durations its own
way, then asks this)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

PERCENTILES = (50, 90, 99)


def percentiles(points: Iterable[tuple[float, int]]) -> dict[str, Any]:
    """Nearest-rank percentiles of weighted durations; ``None`` when there are none."""
    ordered = sorted(points)
    count = sum(n for _, n in ordered)
    out: dict[str, Any] = {}
    for p in PERCENTILES:
        out[f"p{p}"] = None if count == 0 else round(_at_rank(ordered, p, count), 3)
    out["count"] = count
    return out


def _at_rank(ordered: list[tuple[float, int]], p: int, count: int) -> float:
    rank = max(1, math.ceil(p * count / 100))
    seen = 0
    for value, n in ordered:
        seen += n
        if seen >= rank:
            return value
    return ordered[-1][0]
