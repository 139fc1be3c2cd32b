"""Where a bulk POST's server time goes: the server's own functions for
``POST /tasks`` with a list body, run one after another in this process (no
HTTP, no event loop) on a temporary database, each phase timed, the insert
phase also under cProfile.

    .venv/bin/python bench/profile_bulk.py [--tasks N] [--top K]

Phases: validate (pydantic, as the view does; and again with the memory as
integer bytes, to show what parsing "1 GiB" costs), insert (``create_tasks`` in
one transaction, COMMIT included, synchronous=FULL), render (``render.meta``
per item and the JSON response body). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

try:
    from bench import printing
except ImportError:  # run as a script: put the repository root (bench/, testbed/) on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import printing

from pydantic import TypeAdapter

from banyan.constants import DEFAULT_DATE_FORMAT
from banyan.models import TaskCreate
from banyan.tokens import Caller, Role
from server import render
from server.stores.sqlite import schema, tasks

TASK = {"command": "true", "requested_resources": {"memory": "1 GiB"}}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--top", type=int, default=18, help="functions to list from the profile")
    args = parser.parse_args()
    n = args.tasks
    body = json.dumps([TASK] * n).encode()
    caller = Caller(name="local-admin", role=Role.ADMIN)
    adapter = TypeAdapter(list[TaskCreate])
    printing.print_machine(f"bulk POST of {n:,} tasks, phase by phase, in-process")

    with tempfile.TemporaryDirectory(prefix="banyan-bench-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "p.db", isolation_level=None)
        schema.configure(conn, synchronous="FULL", busy_timeout_ms=10_000)
        schema.migrate(conn)

        def insert(items: list[TaskCreate]) -> list[dict[str, object]]:
            conn.execute("BEGIN IMMEDIATE")
            created = tasks.create_tasks(conn, items, caller, time.time())
            conn.execute("COMMIT")
            return created

        # warm-up on a small batch (imports, statement cache)
        insert(adapter.validate_json(json.dumps([TASK] * 100)))

        phases: list[tuple[str, float]] = []
        t0 = time.perf_counter()
        items = adapter.validate_json(body)
        phases.append(("validate (pydantic)", time.perf_counter() - t0))
        plain = json.dumps([{**TASK, "requested_resources": {"memory": 2**30}}] * n).encode()
        t0 = time.perf_counter()
        adapter.validate_json(plain)
        as_bytes = time.perf_counter() - t0

        t0 = time.perf_counter()
        created = insert(items)
        phases.append(("insert + commit (create_tasks)", time.perf_counter() - t0))

        t0 = time.perf_counter()
        out = [render.meta(c, DEFAULT_DATE_FORMAT) for c in created]
        payload = json.dumps(
            {"_status": "OK", "_items": out}, separators=(",", ":"), ensure_ascii=False
        )
        phases.append(("render + json.dumps response", time.perf_counter() - t0))
        total = sum(s for _, s in phases)

        print_rows: list[list[object]] = [
            [name, s * 1000, s / n * 1e6, s / total * 100] for name, s in phases
        ]
        print_rows.append(["total", total * 1000, total / n * 1e6, 100.0])
        printing.print_table(["phase", "ms", "us/task", "%"], print_rows)
        print(
            f"=> at most {n / total:,.0f} tasks/s from these phases alone on one core "
            f"(response {len(payload) / 2**20:.1f} MiB)"
        )
        print(
            f"for comparison, validate with memory given as integer bytes (2**30) instead of "
            f'"1 GiB": {as_bytes * 1000:,.0f} ms ({as_bytes / n * 1e6:.1f} us/task)\n'
        )

        # the insert phase again (a second batch), under cProfile
        items = adapter.validate_json(body)
        profile = cProfile.Profile()
        profile.enable()
        insert(items)
        profile.disable()
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(args.top)
        print("insert phase (a second batch) under cProfile, by own time:")
        print(text.getvalue().split("\n", 4)[-1].rstrip())
        conn.close()


if __name__ == "__main__":
    main()
