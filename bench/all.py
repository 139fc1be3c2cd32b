"""Every benchmark, one after another, then one table of their headline figures.

    .venv/bin/python bench/all.py [--quick] [--only NAMES] [--skip NAMES]
        [--out DIR] [--markdown]

(``make bench`` runs it.) Each benchmark runs as its own subprocess,
``bench/NAME.py [--quick] --json DIR/NAME.json``, its full output going to
``DIR/NAME.log``; the figures come from that JSON (``bench/printing.Report``),
not from its text. A benchmark that fails or overruns its time limit is
stopped (its process group, which this script started) and shown as such;
the others still run. The table (benchmark, figure, value, target, met?)
follows the machine description; ``DIR/all.json`` has everything, and
``--markdown`` also prints the table as Markdown (for the README).

``faults`` (the reliability scorecard, ``make faults``) is listed but runs
only when named in ``--only``. Figures are printed, never asserted; the exit
code is 1 only when a benchmark itself failed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from bench import printing
except ImportError:  # run as a script: put the repository root (bench/, testbed/) on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import printing

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Bench:
    name: str
    what: str
    limit_s: float  # the full run is stopped after this long
    quick_limit_s: float
    extra: tuple[str, ...] = ()
    optional: bool = False  # runs only when named in --only


BENCHES = (
    Bench("submit", "single and bulk POST /tasks", 1_200, 300),
    Bench("throughput", "shell tasks e2e, 2 workers; submit->start", 900, 300),
    Bench("feed", "event fan-out, 50 subscribers", 300, 180),
    Bench("heartbeat", "1,000 simulated workers heartbeating", 600, 300),
    Bench("rss", "server RSS before/after 1 M completed tasks", 2_000, 300, ("--max-s", "1800")),
    Bench("query", "GET /tasks on 1 M tasks", 1_500, 400),
    Bench("stats", "GET /stats on 1 M tasks", 1_500, 400),
    Bench("tui", "the TUI under 1,000 events/s", 300, 120),
    Bench("spawn", "process spawning", 600, 180),
    Bench("cli_start", "banyan CLI start time (--help, ls)", 300, 120),
    Bench("dispatch", "dispatch capacity, simulated workers, FULL", 600, 180),
    Bench("stores", "SQLite vs PostgreSQL, one vs two PG servers", 3_600, 1_200),
    Bench("peers", "race vs huey and HyperQueue, 1,000 tasks, 3 reps", 1_800, 600),
    Bench("faults", "the reliability scorecard", 3_600, 900, optional=True),
)


@dataclass
class Outcome:
    bench: Bench
    status: str  # "ok", "failed (exit N)", "timed out", "no figures"
    seconds: float
    log: Path
    figures: list[dict[str, Any]] = field(default_factory=list)


def run_one(bench: Bench, out: Path, *, quick: bool) -> Outcome:
    script = HERE / f"{bench.name}.py"
    json_path = out / f"{bench.name}.json"
    log = out / f"{bench.name}.log"
    json_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(script), *(["--quick"] if quick else []), *bench.extra]
    cmd += ["--json", str(json_path)]
    limit = bench.quick_limit_s if quick else bench.limit_s
    t0 = time.monotonic()
    with open(log, "wb") as handle:
        # Its own session: on overrun the whole group it started is stopped, nothing else.
        proc = subprocess.Popen(
            cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=HERE.parent, start_new_session=True
        )
        try:
            code: int | None = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            code = None
            stop_group(proc)
    seconds = time.monotonic() - t0
    if code is None:
        status = f"timed out after {limit:.0f} s"
    elif code != 0:
        status = f"failed (exit {code})"
    else:
        status = "ok"
    figures: list[dict[str, Any]] = []
    if json_path.exists():
        try:
            data = json.loads(json_path.read_text())
        except ValueError:
            data = {}
        if isinstance(data, dict) and isinstance(data.get("figures"), list):
            figures = data["figures"]
    if status == "ok" and not figures and not bench.optional:
        status = "no figures"
    return Outcome(bench, status, seconds, log, figures)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group of a benchmark this script started, then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def value_text(figure: dict[str, Any]) -> str:
    value = figure.get("value")
    if value is None:
        return "-"
    return f"{printing.fmt(float(value))} {figure.get('unit', '')}".rstrip()


def target_text(figure: dict[str, Any]) -> str:
    unit = figure.get("unit", "")
    if figure.get("at_least") is not None:
        return f">= {printing.fmt(float(figure['at_least']))} {unit}".rstrip()
    if figure.get("at_most") is not None:
        return f"<= {printing.fmt(float(figure['at_most']))} {unit}".rstrip()
    return ""


def met_text(figure: dict[str, Any]) -> str:
    met = figure.get("met")
    return "" if met is None else ("yes" if met else "NO")


def rows(outcomes: list[Outcome]) -> list[list[str]]:
    table: list[list[str]] = []
    for o in outcomes:
        if o.status != "ok" or not o.figures:
            table.append([o.bench.name, o.bench.what, o.status, "", f"see {o.log.name}"])
        for f in o.figures:
            note = f" ({f['note']})" if f.get("note") else ""
            table.append(
                [o.bench.name, f["name"] + note, value_text(f), target_text(f), met_text(f)]
            )
    return table


def markdown(table: list[list[str]]) -> str:
    lines = ["| benchmark | figure | value | target | met? |", "|---|---|---|---|---|"]
    for bench, figure, value, target, met in table:
        lines.append(f"| `{bench}` | {figure} | **{value}** | {target} | {met} |")
    return "\n".join(lines)


def select(only: str | None, skip: str | None) -> list[Bench]:
    known = {b.name: b for b in BENCHES}
    wanted = [n.strip() for n in only.split(",") if n.strip()] if only else []
    dropped = {n.strip() for n in skip.split(",") if n.strip()} if skip else set()
    unknown = sorted((set(wanted) | dropped) - set(known))
    if unknown:
        raise SystemExit(f"unknown benchmark {unknown[0]!r}; known: {', '.join(known)}")
    chosen = [known[n] for n in wanted] if wanted else [b for b in BENCHES if not b.optional]
    return [b for b in chosen if b.name not in dropped]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="every benchmark's small sizes")
    parser.add_argument("--only", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--skip", default=None, help="comma-separated names to leave out")
    parser.add_argument(
        "--out", type=Path, default=None, help="where logs and JSON go (default: a new temp dir)"
    )
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    args = parser.parse_args()
    chosen = select(args.only, args.skip)
    out = args.out or Path(tempfile.mkdtemp(prefix="banyan-bench-all-"))
    out.mkdir(parents=True, exist_ok=True)
    limit = sum(b.quick_limit_s if args.quick else b.limit_s for b in chosen)
    print(
        f"running {len(chosen)} benchmarks{' (--quick)' if args.quick else ''}: "
        f"{', '.join(b.name for b in chosen)}; logs in {out}; at most {limit / 60:.0f} min"
    )
    outcomes: list[Outcome] = []
    started = time.monotonic()
    for i, bench in enumerate(chosen, 1):
        print(f"[{i}/{len(chosen)}] {bench.name}: {bench.what} ...", end=" ", flush=True)
        outcome = run_one(bench, out, quick=args.quick)
        outcomes.append(outcome)
        print(f"{outcome.status} in {outcome.seconds:.0f} s", flush=True)
    total_s = time.monotonic() - started
    print()
    printing.print_machine("banyan benchmarks" + (" (--quick)" if args.quick else ""))
    table = rows(outcomes)
    printing.print_table(["benchmark", "figure", "value", "target", "met?"], table)
    missed = sum(1 for o in outcomes for f in o.figures if f.get("met") is False)
    print(
        f"\n{sum(o.status == 'ok' for o in outcomes)}/{len(outcomes)} benchmarks ran, "
        f"{missed} figure(s) miss their target; {total_s / 60:.1f} min in all; logs in {out}"
    )
    if args.quick:
        print("--quick: small sizes, so the figures are indicative only")
    if args.markdown:
        print()
        print(markdown(table))
    summary = {
        "quick": args.quick,
        "machine": dict(printing.machine()),
        "seconds": total_s,
        "benchmarks": [
            {
                "name": o.bench.name,
                "status": o.status,
                "seconds": o.seconds,
                "log": str(o.log),
                "figures": o.figures,
            }
            for o in outcomes
        ],
    }
    (out / "all.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if all(o.status == "ok" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
