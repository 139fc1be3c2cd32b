"""The TUI under load: ``BanyanApp`` headless (``App.run_test``, 80x24) on a
fake source of 100,000 tasks, fed 1,000 events a second for 10 seconds.

    .venv/bin/python bench/tui.py [--tasks N] [--rate EV_PER_S] [--seconds S] [--rows N]

Printed, never asserted:

- start: from the app starting to the first snapshot on screen (live);
- event → table: from an event entering the feed to the task table (and the
  other views) having applied it, p50/p90/p99/max; events are applied in
  batches every 100 ms, so ~50 ms of this is the batching itself;
- batch: the time one batch takes to apply (model + table), and its size;
- loop lag: how late a 20 ms timer fires on the app's event loop, i.e. how
  long the app is busy between two frames (what a key press would wait);
- key: from a key press reaching the app to the table's cursor being on
  the next task (sent through the headless driver, as a terminal would);
- memory: resident set size at start, once the fake's documents exist (they
  are the "server" here), with the tasks loaded in the app, and at the end;
  the model's own size (tracemalloc); CPU used by the process meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import tracemalloc
from collections import deque
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0]).resolve() == HERE:
    sys.path[0] = str(HERE.parent)  # run as a script: import the tui package, not this file

import psutil  # noqa: E402
from textual import events  # noqa: E402

from banyan.events import Event  # noqa: E402
from bench import measure, printing  # noqa: E402
from tui.app import BanyanApp  # noqa: E402
from tui.fake import FakeSource, make_id, task_doc, worker_doc  # noqa: E402
from tui.state import Changes, Model  # noqa: E402

QUEUES = ("default", "gpu", "cpu", "io")


def make_tasks(n: int, now: float) -> list[dict[str, Any]]:
    rng = random.Random(1)
    tasks = []
    start = int(now) - n // 10
    for i in range(n):
        roll = rng.random()
        if roll < 0.6:
            state, exit_status = "terminated", "success" if rng.random() < 0.9 else "failure"
        elif roll < 0.85:
            state, exit_status = "available", None
        elif roll < 0.9:
            state, exit_status = "running", None
        else:
            state, exit_status = "inactive", None
        worker = f"w{i % 20:02d}" if state in ("running", "terminated") else None
        tasks.append(
            task_doc(
                make_id(start + i // 10, i),
                name=f"job-{i}",
                state=state,
                exit_status=exit_status,
                queue=QUEUES[i % len(QUEUES)],
                worker=worker,
                command=f"./run.sh {i}",
            )
        )
    return tasks


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


class Stream:
    """Plausible events at ``rate`` per second: claims, finishes, new tasks,
    progress, memory samples and heartbeats."""

    def __init__(self, source: FakeSource, rate: int, seed: int = 2) -> None:
        self.source = source
        self.rate = rate
        self.rng = random.Random(seed)
        self.sent: dict[int, float] = {}
        self.available = deque(i for i, d in source.docs.items() if d["state"] == "available")
        self.running = deque(i for i, d in source.docs.items() if d["state"] == "running")
        self.count = 0
        self._ids = 0x800000

    def one(self) -> int:
        roll = self.rng.random()
        src = self.source
        if roll < 0.3 and self.available:
            task_id = self.available.popleft()
            self.running.append(task_id)
            return src.push_state(task_id, "running", worker=f"w{self.count % 20:02d}", attempt=1)
        if roll < 0.6 and self.running:
            task_id = self.running.popleft()
            status = "success" if self.rng.random() < 0.9 else "failure"
            return src.push_state(task_id, "terminated", exit_status=status, attempt=1)
        if roll < 0.75 or not self.running:
            self._ids += 1
            task_id = make_id(int(time.time()), self._ids)
            self.available.append(task_id)
            data: dict[str, Any] = {"_id": task_id, "name": f"new-{self._ids}"}
            data["state"] = "available"
            data.update(queue=QUEUES[self._ids % len(QUEUES)], priority=0, owner="bench")
            return src.push("task.created", data)
        task_id = self.running[self.rng.randrange(len(self.running))]
        if roll < 0.9:
            return src.push("task.progress", {"_id": task_id, "percent": self.rng.random() * 100})
        if roll < 0.95:
            sample = {"_id": task_id, "time": time.time(), "resident_memory_bytes": 2**20}
            return src.push("task.usage", sample)
        name = f"w{self.rng.randrange(20):02d}"
        return src.push("worker.heartbeat", {"name": name, "worker": name})

    async def run(self, seconds: float) -> None:
        start = time.perf_counter()
        while (now := time.perf_counter()) - start < seconds:
            for _ in range(int((now - start) * self.rate) - self.count):
                seq = self.one()
                self.sent[seq] = time.perf_counter()
                self.count += 1
            await asyncio.sleep(0.005)


async def key_latency(app: BanyanApp, key: str) -> float:
    """From a key reaching the app to the table's cursor being on another task."""
    table = app.tasks_view.table
    before = table.cursor_task_id()
    event = events.Key(key, None)
    event.set_sender(app)
    assert app._driver is not None
    start = time.perf_counter()
    app._driver.send_message(event)
    while table.cursor_task_id() == before and time.perf_counter() - start < 5:
        await asyncio.sleep(0.001)
    return time.perf_counter() - start


async def lag_probe(lags: list[float], stop: asyncio.Event, period_s: float = 0.02) -> None:
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(period_s)
        lags.append(time.perf_counter() - before - period_s)


async def bench(args: argparse.Namespace) -> None:
    rss_start = rss_mb()
    now = time.time()
    docs = make_tasks(args.tasks, now)
    tracemalloc.start()
    model = Model.from_snapshot(docs, [], None, now=now)
    model_mb = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()
    del model
    rss_data = rss_mb()
    workers = [worker_doc(f"w{i:02d}", state="busy", used_cores=2) for i in range(20)]
    source = FakeSource(docs, workers, clock=time.time)
    del docs
    source.keep_frames = False
    app = BanyanApp(source, row_limit=args.rows)
    stream = Stream(source, args.rate)
    latencies: list[float] = []
    batches: list[int] = []
    apply_ms: list[float] = []

    def applied(events: list[Event], at: float) -> None:
        batches.append(len(events))
        for event in events:
            sent = stream.sent.pop(event.seq or -1, None)
            if sent is not None:
                latencies.append(at - sent)

    drawn = app.on_model_changed

    def timed(changes: Changes) -> None:
        before = time.perf_counter()
        drawn(changes)
        apply_ms.append((time.perf_counter() - before) * 1000)

    app.on_batch_applied = applied
    app.on_model_changed = timed  # type: ignore[method-assign]
    started = time.perf_counter()
    async with app.run_test(size=(80, 24)) as pilot:
        while not (app.link.live and app.tasks_view.table.row_count):
            await asyncio.sleep(0.01)
        start_s = time.perf_counter() - started
        await pilot.pause()
        rss_loaded = rss_mb()
        lags: list[float] = []
        stop = asyncio.Event()
        probe = asyncio.create_task(lag_probe(lags, stop))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        producer = asyncio.create_task(stream.run(args.seconds))
        keys: list[float] = []
        while not producer.done():
            keys.append(await key_latency(app, "down" if len(keys) % 2 == 0 else "up"))
            await asyncio.sleep(0.2)
        await producer
        deadline = time.perf_counter() + 5
        while stream.sent and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        cpu_pct = 100 * (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        stop.set()
        await probe
        rows = app.tasks_view.table.row_count
        loaded = len(app.model.tasks) if app.model else 0
        rss_end = rss_mb()

    p = measure.percentile
    ms = [x * 1000 for x in latencies]
    lag_ms = [x * 1000 for x in lags]
    key_ms = [x * 1000 for x in keys]
    printing.print_machine("bench/tui.py: banyan-tui headless, 80x24")
    print(
        f"{args.tasks:,} tasks loaded ({loaded:,} in the model, {rows:,} table rows), "
        f"{stream.count:,} events at {args.rate:,}/s for {args.seconds:g} s"
    )
    print()
    printing.print_table(
        ["measure", "p50", "p90", "p99", "max", "n"],
        [
            ["event → table (ms)", p(ms, 50), p(ms, 90), p(ms, 99), max(ms, default=0), len(ms)],
            [
                "batch apply (ms)",
                p(apply_ms, 50),
                p(apply_ms, 90),
                p(apply_ms, 99),
                max(apply_ms, default=0),
                len(apply_ms),
            ],
            [
                "events per batch",
                p(batches, 50),
                p(batches, 90),
                p(batches, 99),
                max(batches, default=0),
                len(batches),
            ],
            [
                "loop lag (ms)",
                p(lag_ms, 50),
                p(lag_ms, 90),
                p(lag_ms, 99),
                max(lag_ms, default=0),
                len(lag_ms),
            ],
            [
                "key → cursor moved (ms)",
                p(key_ms, 50),
                p(key_ms, 90),
                p(key_ms, 99),
                max(key_ms, default=0),
                len(key_ms),
            ],
        ],
    )
    print()
    printing.print_table(
        ["", "value"],
        [
            ["start to live (s)", start_s],
            ["events not applied within 5 s", len(stream.sent)],
            ["RSS at start (MiB)", rss_start],
            ["RSS with the fake's 100k documents built (MiB)", rss_data],
            ["the model of the tasks alone (MiB, tracemalloc)", model_mb],
            ["RSS with the tasks loaded (MiB)", rss_loaded],
            ["RSS at the end (MiB)", rss_end],
            ["CPU during the stream (% of one core)", cpu_pct],
        ],
    )
    report = printing.Report("tui", quick=args.quick)
    report.add(
        f"TUI event -> table p99, {args.tasks:,} tasks, {args.rate:,} ev/s",
        p(ms, 99),
        "ms",
        note=f"p50 {p(ms, 50):.0f} ms",
    )
    report.add("TUI key -> cursor moved p50", p(key_ms, 50), "ms")
    report.write(args.json)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=1000, help="events per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rows", type=int, default=1000, help="the table's row limit")
    parser.add_argument("--quick", action="store_true", help="20,000 tasks for 3 s")
    printing.add_json_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.seconds = min(args.tasks, 20_000), min(args.seconds, 3.0)
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
