"""Profiling a server a benchmark started: ``py-spy record`` on its PID and
the functions with the most samples in what it wrote; the top functions of a
cProfile file."""

from __future__ import annotations

import io
import pstats
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_py_spy(
    pid: int, out: Path, *, duration_s: float, rate_hz: int = 200
) -> subprocess.Popen[bytes]:
    """``py-spy record`` on ``pid`` (a server this bench started) for
    ``duration_s``, writing collapsed stacks to ``out`` (read them with
    :func:`top_frames`); py-spy stops by itself after the duration."""
    spy = Path(sys.executable).parent / "py-spy"
    cmd = [str(spy) if spy.exists() else "py-spy", "record", "--pid", str(pid)]
    cmd += ["--duration", str(max(1, round(duration_s))), "--rate", str(rate_hz)]
    cmd += ["--format", "raw", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top_frames(raw: Path, *, top: int = 25, own: bool = True) -> list[tuple[str, float]]:
    """From py-spy's collapsed stacks: the functions with the most samples,
    as (function, % of samples); ``own`` = the innermost frame only, else any
    frame on the stack (cumulative)."""
    counts: dict[str, int] = {}
    total = 0
    for line in Path(raw).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")
        total += int(n)
        chosen = frames[-1:] if own else set(frames)
        for frame in chosen:
            name = re.sub(r":\d+\)$", ")", frame)  # per function, not per line
            name = re.sub(r" \(/\S*/(site-packages|python3\.\d+|main)/", " (", name)
            counts[name] = counts.get(name, 0) + int(n)
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return [(name, 100 * n / total) for name, n in ranked] if total else []


_PATH_NOISE = re.compile(r"\S*/(?:site-packages|python3\.\d+)/|" + re.escape(str(ROOT)) + "/")
PROJECT_CODE = r"/(?:worker|server|banyan)/"  # pstats restriction: the project's own functions


def print_profile(path: Path, title: str, top: int = 15) -> None:
    """Top ``top`` by cumulative time among the project's functions (the whole
    list starts with runpy/asyncio frames that say nothing), then top ``top``
    by own time among all functions."""
    if not path.exists():
        print(f"  (no profile written at {path})")
        return
    for key, restriction, scope in (
        ("cumulative", PROJECT_CODE, "project code"),
        ("tottime", None, "all functions"),
    ):
        buf = io.StringIO()
        stats = pstats.Stats(str(path), stream=buf).sort_stats(key)
        if restriction:
            stats.print_stats(restriction, top)
        else:
            stats.print_stats(top)
        text = buf.getvalue()
        start = text.find("   ncalls")
        head = [ln for ln in text[:start].splitlines() if "function calls" in ln]
        print(f"-- {title}, top {top} by {key} ({scope}); {head[0].strip() if head else ''}")
        print(_PATH_NOISE.sub("", text[start:].rstrip()))
        print()
