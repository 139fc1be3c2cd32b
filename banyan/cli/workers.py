"""``banyan workers``: the workers, their state and load, and what they run.

Workers that left or were lost are hidden unless ``--all``: the server keeps them
(for the history of the tasks they ran), but they are no longer part of the pool."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from banyan.cli.context import Context
from banyan.client.format import (
    duration,
    gpu_count,
    memory,
    number,
)

WORKER_STYLES = {
    "idle": "cyan",
    "busy": "bold yellow",
    "draining": "magenta",
    "disconnected": "red",
    "lost": "bold red",
    "left": "dim",
}


# Workers that are gone for good; "disconnected" ones may come back, so they show.
GONE_STATES = frozenset({"left", "lost"})


WORKERS_EPILOG = """\
examples:
  banyan workers
  banyan workers --all                     # also those that left or were lost
  banyan workers --json | jq '.[] | select(.state == "idle") | .name'
"""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "workers",
        parents=parents,
        help="list workers and their load",
        description="List the workers: state, used/total cores, memory and GPUs, running tasks. "
        "Workers that left or were lost are hidden unless --all.",
        epilog=WORKERS_EPILOG,
        formatter_class=raw,
    )
    p.add_argument("--all", action="store_true", help="also the workers that left or were lost")
    p.set_defaults(handler=run_workers)


def _used(capacity: Mapping[str, Any], free: Mapping[str, Any], key: str) -> tuple[float, float]:
    total = capacity.get(key, 0)
    total_n = float(gpu_count(total)) if key == "gpus" else float(total or 0)
    free_n = float(free.get(key, total_n) or 0)
    return max(0.0, total_n - free_n), total_n


def _ratio(used: float, total: float, *, as_memory: bool = False) -> str:
    if as_memory:
        return f"{memory(int(used))} / {memory(int(total))}"
    return f"{number(used)}/{number(total)}"


def _ago(age: object) -> str:
    return duration(round(float(age), 1)) + " ago" if isinstance(age, int | float) else "-"


async def run_workers(ctx: Context) -> int:
    from rich.table import Table
    from rich.text import Text

    async with ctx.client() as client:
        every = await client.workers()
    workers = every if ctx.args.all else [w for w in every if w.get("state") not in GONE_STATES]
    hidden = len(every) - len(workers)
    if ctx.out.json_mode:
        ctx.out.json(workers)
        return 0
    table = Table(box=None, header_style="bold", pad_edge=False)
    # With --all, when each departed worker went (its heartbeat is when it was last heard).
    gone = any(w.get("state") in GONE_STATES for w in workers)
    headers = ["NAME", "STATE", "CORES", "MEMORY", "GPUS", "RUNNING", "HEARTBEAT"]
    for header in [*headers, *(["GONE"] if gone else []), "QUEUES"]:
        table.add_column(header, no_wrap=True)
    for worker in workers:
        capacity = worker.get("capacity") or {}
        free = worker.get("free") or {}
        cores = _used(capacity, free, "cores")
        mem = _used(capacity, free, "memory")
        gpus = _used(capacity, free, "gpus")
        state = worker.get("state") or "-"
        # Not heard from for two heartbeats: not lost yet, but its tasks may not run.
        quiet = worker.get("responsive") is False
        went = [_ago(worker.get("left_age_s")) if state in GONE_STATES else ""] if gone else []
        table.add_row(
            worker.get("name") or worker.get("_id") or "-",
            Text(f"{state} (unresponsive)", style="bold yellow")
            if quiet
            else Text(state, style=WORKER_STYLES.get(state, "")),
            _ratio(*cores),
            _ratio(*mem, as_memory=True),
            _ratio(*gpus),
            str(len(worker.get("running") or [])),
            _ago(worker.get("last_heartbeat_age_s")),
            *went,
            ",".join(worker.get("queues") or []),
        )
    if workers:
        ctx.out.show(table)
    if hidden:
        ctx.out.show(Text(f"{hidden} left or lost (--all shows them)", style="dim"))
    elif not workers:
        ctx.out.show(Text("no workers have connected yet", style="dim"))
    return 0
