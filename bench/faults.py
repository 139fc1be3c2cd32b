"""The reliability scorecard: every fault of ``tests/faults`` at full size,
one row per fault.

Each fault runs against a real ``banyan-server`` and real ``banyan-worker``
processes running real shell tasks (>= 10,000 tasks each; the server kill
five times), records a history (every submit and whether it was
acknowledged, every execution as the task itself wrote it, every attempt the
server recorded, every event each subscriber got) and checks it:

    acknowledged-then-lost, unexpected executions, duplicate concurrent
    executions, stale-attempt writes accepted, orphan processes, event-feed
    gaps: each must be 0; and no acknowledged task may be left unfinished
    ("stuck") or end ``terminated`` without ever having run ("never ran")

and measures worker-loss detection and recovery, cancel latency and the
server's restart-to-serving time (p50 / p99, seconds). The disk-full row
comes from ``tests/faults/diskfull.py`` when it exists.

Every fault runs on each store (``--store``, both by default): SQLite, then
PostgreSQL (a throwaway cluster from ``testbed.postgres``, durable settings,
a fresh database per fault). The big table has a row per fault and store;
the last table puts the two stores side by side. The disk-full fault is
SQLite's only: it fills the filesystem under the server's database file,
and on PostgreSQL that file is the database server's (whose full disk the
store turns into 507, like SQLite's; not measured here).

    .venv/bin/python bench/faults.py                 # everything (make faults)
    .venv/bin/python bench/faults.py --quick         # small sizes, a few minutes
    .venv/bin/python bench/faults.py --only worker-stop --only cancel-race
    .venv/bin/python bench/faults.py --quick --store postgresql

Exit status 1 when a zero figure is not 0. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script: the tests.faults package is at the root

from bench import printing  # noqa: E402
from testbed.postgres import Postgres  # noqa: E402
from tests.faults.harness import on_postgres  # noqa: E402
from tests.faults.history import ZERO_FIGURES, FaultResult  # noqa: E402
from tests.faults.scenarios import BY_NAME, FAULTS  # noqa: E402

STORES = ("sqlite", "postgresql")
SHOWN = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}

HEADERS = [
    "fault",
    "store",
    "tasks",
    "faults",
    "ack lost",
    "unexpected",
    "dup concurrent",
    "stale accepted",
    "orphans",
    "feed gaps",
    "twins",
    "stuck",
    "never ran",
    "loss detect p50/p99 s",
    "recovery p50/p99 s",
    "cancel p50/p99 s",
    "restart p50/p99 s",
    "wall s",
]
DISK_FULL = "disk-full"


def pair(values: tuple[float, float]) -> str:
    p50, p99 = values
    if p50 != p50:  # nan: not measured by this fault
        return "-"
    return f"{p50:.3f} / {p99:.3f}"


def verdict(r: FaultResult) -> str:
    """One cell of the side-by-side table."""
    bad = r.violations()
    if bad:
        return "FAIL " + ", ".join(f"{k}={v}" for k, v in bad.items())
    return f"0 violations ({r.tasks:,} tasks, {r.wall_s:.0f} s)"


def row(r: FaultResult, store: str) -> list[Any]:
    zeros: list[Any] = [getattr(r, name) for name in ZERO_FIGURES]
    if not r.stale_checked:  # this fault supersedes no attempt: nothing to refuse
        zeros[ZERO_FIGURES.index("stale_writes_accepted")] = "-"
    return [
        r.fault,
        store,
        r.tasks,
        r.faults_injected,
        *zeros,
        r.stuck,
        r.never_ran,
        pair(r.loss_detect_s),
        pair(r.recovery_s),
        pair(r.cancel_latency_s),
        pair(r.restart_s),
        round(r.wall_s, 1),
    ]


def disk_full(workdir: Path, quick: bool) -> tuple[list[Any], dict[str, Any]] | None:
    """The disk-full row, from the other engineer's ``tests/faults/diskfull.py``."""
    if not (ROOT / "tests" / "faults" / "diskfull.py").exists():
        return None
    module = importlib.import_module("tests.faults.diskfull")
    tasks = 1_000 if quick else 10_000
    began = time.monotonic()
    found: dict[str, Any] = dict(module.run(workdir, tasks))
    wall = time.monotonic() - began
    dash = "-"
    cells = [
        "disk full",
        "SQLite",
        found.get("acknowledged", tasks),
        dash,
        found.get("acknowledged_lost", dash),
        *([dash] * (len(ZERO_FIGURES) - 1)),
        dash,
        dash,
        dash,
        dash,
        dash,
        dash,
        round(wall, 1),
    ]
    return cells, found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (minutes, not tens)")
    parser.add_argument(
        "--only",
        action="append",
        choices=[*BY_NAME, DISK_FULL],
        help="run only this fault (repeatable)",
    )
    parser.add_argument(
        "--store", choices=[*STORES, "both"], default="both", help="which store(s) (default both)"
    )
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary directory")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    chosen = set(args.only or [*BY_NAME, DISK_FULL])
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)

    printing.print_machine("banyan reliability scorecard" + (" (--quick)" if args.quick else ""))
    stores = STORES if args.store == "both" else (args.store,)
    rows: list[list[Any]] = []
    results: list[dict[str, Any]] = []
    side: dict[str, dict[str, str]] = {}  # fault -> store -> verdict
    failed = False
    with contextlib.ExitStack() as stack:
        tmp = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="banyan-faults-", dir=args.dir))
        )
        postgres = stack.enter_context(Postgres()) if "postgresql" in stores else None
        for fault in FAULTS:
            if fault.name not in chosen:
                continue
            for store in stores:
                print(f"-- {fault.name} on {SHOWN[store]}: {fault.what}", flush=True)
                where = on_postgres(postgres) if store == "postgresql" and postgres else None
                try:
                    with where or contextlib.nullcontext():
                        result = fault.run(tmp / f"{fault.name}-{store}", args.quick)
                except Exception:
                    traceback.print_exc()
                    print(f"   {fault.name} did not complete: no figures", flush=True)
                    side.setdefault(fault.name, {})[store] = "did not complete"
                    failed = True
                    continue
                print(f"   {json.dumps(result.details, default=str)}", flush=True)
                failed |= bool(result.violations())
                rows.append(row(result, SHOWN[store]))
                results.append({"store": store, **asdict(result)})
                side.setdefault(fault.name, {})[store] = verdict(result)
        if DISK_FULL in chosen and "sqlite" in stores:
            print("-- disk-full on SQLite: the database's filesystem fills up, then has room again")
            try:
                found = disk_full(tmp / DISK_FULL, args.quick)
            except Exception:
                traceback.print_exc()
                found = None
                failed = True
            if found is None:
                print("   tests/faults/diskfull.py is not there (yet): no row")
            else:
                cells, figures = found
                print(f"   {json.dumps(figures, default=str)}")
                rows.append(cells)
                results.append({"store": "sqlite", "fault": "disk full", **figures})
                lost = figures.get("acknowledged_lost")
                failed |= isinstance(lost, int) and lost != 0
                side[DISK_FULL] = {"sqlite": f"ack lost {lost}", "postgresql": "n/a (SQLite only)"}
    print()
    printing.print_table(HEADERS, rows)
    print()
    print(
        "zero figures: ack lost, unexpected, dup concurrent, stale accepted (- = no attempt "
        "was superseded), orphans, feed gaps, twins (a retried submit made twice), stuck, "
        "never ran. Times in seconds: "
        "loss detect = fault -> worker.lost event; recovery = fault -> the last abandoned "
        "task started again; cancel = request -> cancelled event; "
        "restart = kill -9 -> /health 200 (polled every 50 ms)."
    )
    if side:
        print()
        printing.print_table(
            ["fault", *(SHOWN[s] for s in stores)],
            [[name, *(by.get(s, "-") for s in stores)] for name, by in side.items()],
        )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
