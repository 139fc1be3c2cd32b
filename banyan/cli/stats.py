"""``banyan stats``: counts by state and queue, throughput, wait and run times, worker load."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from banyan.cli.context import Context
from banyan.cli.output import STATE_STYLES, key_value_table
from banyan.client.format import (
    duration,
    gpu_count,
    memory,
    number,
)
from banyan.client.ids import resolve_job
from banyan.errors import NotFound
from banyan.states import State

STATS_EPILOG = """\
examples:
  banyan stats
  banyan stats --json
  banyan stats --job 6650f0c2a1b2c3d4e5f60718   # one job: counts and time span
"""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "stats",
        parents=parents,
        help="queue and worker statistics",
        description="Counts by state and queue, throughput, wait and run times, worker load.",
        epilog=STATS_EPILOG,
        formatter_class=raw,
    )
    p.add_argument("--job", metavar="ID", help="one job: its counts by state and time span")
    p.set_defaults(handler=run_stats)


def _resources_line(values: Mapping[str, Any] | None) -> str:
    if not values:
        return "-"
    parts = []
    for key, value in values.items():
        if key == "memory":
            parts.append(f"memory {memory(value)}")
        elif key == "gpus":
            parts.append(f"gpus {gpu_count(value)}")
        else:
            parts.append(f"{key} {number(value)}")
    return ", ".join(parts)


def _percentiles(values: Mapping[str, Any] | None) -> str:
    if not values:
        return "-"
    shown = []
    for key in ("p50", "p90", "p99"):
        value = values.get(key)
        shown.append(f"{key} {duration(value) if isinstance(value, int | float) else '-'}")
    if "count" in values:
        shown.append(f"({values['count']} tasks)")
    return "  ".join(shown)


def render_stats(stats: Mapping[str, Any]) -> list[Any]:
    """The renderables of ``banyan stats``; tolerant of missing sections."""
    from rich.table import Table
    from rich.text import Text

    out: list[Any] = []
    tasks = stats.get("tasks") or {}
    by_state = tasks.get("by_state") or {}
    states = [s.value for s in State]
    states += [s for s in by_state if s not in states]
    summary = Table(title="[bold]Tasks[/bold]", title_justify="left", box=None, pad_edge=False)
    summary.add_column("QUEUE", header_style="bold")
    for state in states:
        summary.add_column(state.upper(), justify="right", header_style=STATE_STYLES.get(state, ""))
    summary.add_column("OLDEST AVAILABLE", header_style="bold")
    oldest = tasks.get("oldest_available") or {}
    for queue, counts in sorted((tasks.get("by_queue") or {}).items()):
        row = [str(counts.get(s, 0)) for s in states]
        summary.add_row(queue, *row, str(oldest.get(queue) or "-"))
    summary.add_row(
        Text(f"all ({tasks.get('total', 0)})", style="bold"),
        *[str(by_state.get(s, 0)) for s in states],
        "",
    )
    out.append(summary)

    workers = stats.get("workers") or {}
    if workers:
        counts = [
            f"{workers.get(k, 0)} {k}"
            for k in ("idle", "busy", "draining", "disconnected", "lost", "left")
            if workers.get(k)
        ]
        rows = [
            ("total", f"{workers.get('total', 0)}" + (f" ({', '.join(counts)})" if counts else "")),
            ("capacity", _resources_line(workers.get("capacity"))),
            ("in use", _resources_line(workers.get("in_use"))),
        ]
        out += [Text(""), key_value_table(rows, title="[bold]Workers[/bold]")]

    throughput = stats.get("throughput") or {}
    timing: list[tuple[str, Any]] = []
    if throughput:
        timing.append(
            (
                "finished",
                "  ".join(f"{number(throughput.get(k, 0))} in {k}" for k in ("1m", "5m", "15m")),
            )
        )
    timing.append(("wait time", _percentiles(stats.get("wait_time_s"))))
    timing.append(("run time", _percentiles(stats.get("run_time_s"))))
    out += [Text(""), key_value_table(timing, title="[bold]Throughput and times[/bold]")]
    return out


def render_job(job: Mapping[str, Any]) -> list[Any]:
    """The renderables of ``banyan stats --job``."""
    from rich.text import Text

    counts = job.get("counts") or {}
    states = [s.value for s in State] + [s for s in counts if s not in {x.value for x in State}]
    rows: list[tuple[str, Any]] = [
        ("job", job.get("_id")),
        ("name", job.get("name") or "-"),
        ("owner", job.get("owner") or "-"),
        ("tasks", str(job.get("total", 0))),
        *[
            (state, Text(str(counts[state]), style=STATE_STYLES.get(state, "")))
            for state in states
            if counts.get(state)
        ],
        ("created", job.get("_created") or "-"),
        ("first start", job.get("time_started") or "-"),
        ("last end", job.get("time_ended") or "-"),
    ]
    return [key_value_table(rows, title="[bold]Job[/bold]")]


async def run_stats(ctx: Context) -> int:
    if ctx.args.job:
        async with ctx.client() as client:
            job = await client.job(await resolve_job(client, ctx.args.job))
        if ctx.out.json_mode:
            ctx.out.json(job)
        else:
            ctx.out.show(*render_job(job))
        return 0
    async with ctx.client() as client:
        try:
            stats = await client.request("GET", "/stats")
        except NotFound:
            raise NotFound(
                f"the server at {client.connection.server} has no /stats endpoint "
                "(it is older than this banyan CLI)"
            ) from None
    if ctx.out.json_mode:
        ctx.out.json(stats)
    else:
        ctx.out.show(*render_stats(stats if isinstance(stats, dict) else {}))
    return 0
