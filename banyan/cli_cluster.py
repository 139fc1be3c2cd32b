"""Commands about the whole cluster: ``banyan workers`` and ``banyan stats``."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from rich.table import Table
from rich.text import Text

from banyan.cli_common import Context
from banyan.cli_output import STATE_STYLES, duration, gpu_count, key_value_table, memory, number
from banyan.errors import NotFound
from banyan.states import State

WORKER_STYLES = {
    "idle": "cyan",
    "busy": "bold yellow",
    "draining": "magenta",
    "disconnected": "red",
    "lost": "bold red",
    "left": "dim",
}

WORKERS_EPILOG = """\
examples:
  banyan workers
  banyan workers --json | jq '.[] | select(.state == "idle") | .name'
"""
STATS_EPILOG = """\
examples:
  banyan stats
  banyan stats --json
"""


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "workers",
        parents=parents,
        help="list workers and their load",
        description="List the workers: state, used/total cores, memory and GPUs, running tasks.",
        epilog=WORKERS_EPILOG,
        formatter_class=raw,
    )
    p.set_defaults(handler=run_workers)
    p = sub.add_parser(
        "stats",
        parents=parents,
        help="queue and worker statistics",
        description="Counts by state and queue, throughput, wait and run times, worker load.",
        epilog=STATS_EPILOG,
        formatter_class=raw,
    )
    p.set_defaults(handler=run_stats)


# --- workers ---------------------------------------------------------------------


def _used(capacity: Mapping[str, Any], free: Mapping[str, Any], key: str) -> tuple[float, float]:
    total = capacity.get(key, 0)
    total_n = float(gpu_count(total)) if key == "gpus" else float(total or 0)
    free_n = float(free.get(key, total_n) or 0)
    return max(0.0, total_n - free_n), total_n


def _ratio(used: float, total: float, *, as_memory: bool = False) -> str:
    if as_memory:
        return f"{memory(int(used))} / {memory(int(total))}"
    return f"{number(used)}/{number(total)}"


async def run_workers(ctx: Context) -> int:
    async with ctx.client() as client:
        workers = await client.workers()
    if ctx.out.json_mode:
        ctx.out.json(workers)
        return 0
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header in ("NAME", "STATE", "CORES", "MEMORY", "GPUS", "RUNNING", "HEARTBEAT", "QUEUES"):
        table.add_column(header, no_wrap=True)
    for worker in workers:
        capacity = worker.get("capacity") or {}
        free = worker.get("free") or {}
        cores = _used(capacity, free, "cores")
        mem = _used(capacity, free, "memory")
        gpus = _used(capacity, free, "gpus")
        age = worker.get("last_heartbeat_age_s")
        state = worker.get("state") or "-"
        table.add_row(
            worker.get("name") or worker.get("_id") or "-",
            Text(state, style=WORKER_STYLES.get(state, "")),
            _ratio(*cores),
            _ratio(*mem, as_memory=True),
            _ratio(*gpus),
            str(len(worker.get("running") or [])),
            duration(round(float(age), 1)) + " ago" if isinstance(age, int | float) else "-",
            ",".join(worker.get("queues") or []),
        )
    ctx.out.show(table)
    if not workers:
        ctx.out.show(Text("no workers have connected yet", style="dim"))
    return 0


# --- stats -----------------------------------------------------------------------


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


async def run_stats(ctx: Context) -> int:
    async with ctx.client() as client:
        try:
            stats = await client.request("GET", "/stats")
        except NotFound:
            raise NotFound(
                f"the server at {ctx.connection.server} has no /stats endpoint "
                "(it is older than this banyan CLI)"
            ) from None
    if ctx.out.json_mode:
        ctx.out.json(stats)
    else:
        ctx.out.show(*render_stats(stats if isinstance(stats, dict) else {}))
    return 0
