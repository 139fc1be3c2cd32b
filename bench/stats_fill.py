"""bench/stats.py (b): a database of the server's schema filled with many
tasks in queues of different sizes, 30 % terminated with one attempt each
ending over the last 15 minutes, some cancelled, running, available and held,
50 trees of 111 tasks and one tree of 1,111 (its last level joins two parents
each: diamonds). ``open_db`` and ``task_row`` also serve (a), the write cost.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from banyan.ids import new_ids
from server.stores.sqlite import schema

STATISTICS_OBJECTS = (
    ("TRIGGER", "task_counts_insert"),
    ("TRIGGER", "task_counts_update"),
    ("TRIGGER", "task_counts_delete"),
    ("TRIGGER", "attempt_durations_finish"),
    ("INDEX", "tasks_available_age"),
    ("INDEX", "attempts_terminated"),
)
RESOURCES = '{"cores":1,"memory":1073741824,"gpus":0}'
INSERT = (
    "INSERT INTO tasks (id, name, command, state, queue, priority, max_retry_count, "
    "pending_dependency_count, max_termination_time, estimated_runtime, requested_resources, "
    "cores, memory, gpus, owner, attempt, worker, exit_status, time_started, time_terminated, "
    "created, updated, etag) "
    "VALUES (?, ?, ?, ?, ?, 0, 0, ?, 600, ?, ?, 1, 1073741824, 0, 'bench', ?, ?, ?, ?, ?, ?, ?, "
    "'e')"
)
QUEUES = ["default"] * 6 + ["gpu"] * 2 + ["io"] + [f"batch-{i}" for i in range(10)]


def open_db(
    path: Path, *, statistics: bool = True, synchronous: str = "FULL"
) -> sqlite3.Connection:
    """The schema the server would make; ``statistics=False`` drops what
    migration 3 adds to the write path (its triggers and indexes)."""
    conn = sqlite3.connect(path, isolation_level=None)
    schema.configure(conn, synchronous=synchronous, busy_timeout_ms=10_000)
    schema.migrate(conn)
    if not statistics:
        for kind, name in STATISTICS_OBJECTS:
            conn.execute(f"DROP {kind} IF EXISTS {name}")
    return conn


def task_row(
    task_id: str,
    *,
    state: str,
    queue: str = "default",
    created: float,
    pending: int = 0,
    estimate: float | None = None,
    started: float | None = None,
    ended: float | None = None,
    name: str | None = None,
) -> tuple[Any, ...]:
    attempt = 1 if started is not None else 0
    worker = "bench-worker" if started is not None else None
    exit_status = "success" if state == "terminated" else None
    return (
        task_id, name, "true", state, queue, pending, estimate, RESOURCES, attempt, worker,
        exit_status, started, ended, created, ended or started or created,
    )  # fmt: skip


def lognormal(rng: random.Random, median_s: float, low: float, high: float) -> float:
    return min(high, max(low, rng.lognormvariate(0, 1.2) * median_s))


def fill(path: Path, rows: int, now: float, seed: int = 7) -> dict[str, Any]:
    """``rows`` tasks as described in the module docstring; returns the ids
    the reads use and what the counts should come to."""
    rng = random.Random(seed)
    conn = open_db(path, synchronous="OFF")  # setting up, not measured: no fsyncs
    ids = iter(new_ids(rows, now - 4000))
    big_tree, big_edges = tree_rows(ids, rng, now, fanout=(10, 10, 10), diamonds=True)
    root = big_tree[0][0]
    tasks: list[tuple[Any, ...]] = list(big_tree)
    edges = list(big_edges)
    for _ in range(50):
        small, small_edges = tree_rows(ids, rng, now, fanout=(10, 10), diamonds=False)
        tasks += small
        edges += small_edges
    opened: list[tuple[str, float]] = []
    ended: list[tuple[float, str]] = []
    available_id = ""
    for task_id in ids:
        roll = rng.random()
        queue = rng.choice(QUEUES)
        if roll < 0.30:
            end = now - rng.uniform(0.001, 899.5)
            run = lognormal(rng, 5.0, 0.01, 600)
            wait = lognormal(rng, 30.0, 0.0, 3000)
            tasks.append(
                task_row(task_id, state="terminated", queue=queue, created=end - run - wait,
                         started=end - run, ended=end)
            )  # fmt: skip
            opened.append((task_id, end - run))
            ended.append((end, task_id))
        elif roll < 0.35:
            tasks.append(task_row(task_id, state="cancelled", queue=queue, created=now - 3000))
        elif roll < 0.36:
            start = now - rng.uniform(0, 600)
            tasks.append(
                task_row(task_id, state="running", queue=queue, created=start - 10, started=start)
            )
            opened.append((task_id, start))
        elif roll < 0.66:
            created = now - rng.uniform(0, 3600)
            tasks.append(task_row(task_id, state="available", queue=queue, created=created))
            available_id = available_id or task_id
        else:
            tasks.append(task_row(task_id, state="inactive", queue=queue, created=now - 3600))
    t0 = time.perf_counter()
    for chunk in batches(tasks, 100_000):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, chunk)
        conn.execute("COMMIT")
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO continuations (parent, child, position) VALUES (?, ?, ?)", edges)
    conn.execute("COMMIT")
    # Attempts go in open and are then ended, as claims and finishes do, so the
    # finish trigger sees every one.
    for chunk in batches(opened, 100_000):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO attempts (task_id, attempt, execution_key, worker, token, time_started) "
            "VALUES (?, 1, 'k', 'bench-worker', 'bench', ?)",
            chunk,
        )
        conn.execute("COMMIT")
    ended.sort()  # in the order they would have finished
    for chunk in batches(ended, 100_000):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "UPDATE attempts SET time_terminated = ?, exit_status = 'success' "
            "WHERE task_id = ? AND attempt = 1",
            chunk,
        )
        conn.execute("COMMIT")
    fill_s = time.perf_counter() - t0
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no ANALYZE: the server never runs one
    conn.close()
    return {
        "root": root,
        "tree_size": len(big_tree),
        "available": available_id,
        "rows": len(tasks),
        "finished": len(ended),
        "fill_s": fill_s,
    }


def tree_rows(
    ids: Iterator[str],
    rng: random.Random,
    now: float,
    *,
    fanout: tuple[int, ...],
    diamonds: bool,
) -> tuple[list[tuple[Any, ...]], list[tuple[str, str, int]]]:
    """A continuation tree: the root (terminated), then levels of ``fanout``
    children per node; with ``diamonds`` each node of the last level also
    waits on a second parent of the level above."""
    levels: list[list[str]] = [[next(ids)]]
    edges: list[tuple[str, str, int]] = []
    for width in fanout:
        level: list[str] = []
        for parent in levels[-1]:
            for position in range(width):
                child = next(ids)
                level.append(child)
                edges.append((parent, child, position))
        levels.append(level)
    parents: dict[str, int] = {}
    for _, child, _ in edges:
        parents[child] = parents.get(child, 0) + 1
    if diamonds and len(levels) > 2:
        above = levels[-2]
        for k, child in enumerate(levels[-1]):
            other = above[(k // fanout[-1] + 1) % len(above)]
            edges.append((other, child, 100 + k))
            parents[child] += 1
    rows = []
    for depth, level in enumerate(levels):
        for task_id in level:
            estimate = rng.choice([None, 30.0, 60.0, 600.0])
            if depth == 0:
                end = now - 600
                rows.append(task_row(task_id, state="terminated", created=end - 20,
                                     started=end - 10, ended=end, estimate=estimate))  # fmt: skip
            elif depth == 1:
                rows.append(task_row(task_id, state="available", created=now - 700,
                                     estimate=estimate))  # fmt: skip
            else:
                rows.append(task_row(task_id, state="inactive", created=now - 700,
                                     pending=parents[task_id], estimate=estimate))  # fmt: skip
    return rows, edges


def batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
