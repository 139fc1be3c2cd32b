"""bench/stats.py (a): what the statistics triggers (schema migration 3) cost
every write, straight on SQLite with the server's pragmas (WAL,
synchronous=FULL), one transaction each (task inserts, claims, finishes), and
through bulk ``POST /tasks`` to a real server, with and without them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from banyan.ids import new_ids
from bench import printing, servers
from bench.stats_fill import INSERT, QUEUES, open_db, task_row

TASK = {"command": "true", "requested_resources": {"memory": "1 GiB"}}


def timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def write_rates(tmp: Path, rows: int, *, statistics: bool, run: int) -> dict[str, float]:
    path = tmp / f"writes-{int(statistics)}-{run}.db"
    conn = open_db(path, statistics=statistics)
    now = time.time()
    ids = new_ids(rows, now)
    tasks = [
        task_row(i, state="available" if k % 2 else "inactive", created=now, queue=QUEUES[k % 19])
        for k, i in enumerate(ids)
    ]
    available = ids[1::2]

    def insert() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, tasks)
        conn.execute("COMMIT")

    def claims() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "UPDATE tasks SET state = 'running', attempt = attempt + 1, worker = 'w', "
            "time_started = ?, updated = ? WHERE id = ?",
            ((now + 1, now + 1, i) for i in available),
        )
        conn.executemany(
            "INSERT INTO attempts (task_id, attempt, execution_key, worker, token, time_started) "
            "VALUES (?, 1, 'k', 'w', 'w', ?)",
            ((i, now + 1) for i in available),
        )
        conn.execute("COMMIT")

    def finishes() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "UPDATE attempts SET time_terminated = ?, exit_status = 'success' "
            "WHERE task_id = ? AND attempt = 1",
            ((now + 2 + k * 0.001, i) for k, i in enumerate(available)),
        )
        conn.executemany(
            "UPDATE tasks SET state = 'terminated', exit_status = 'success', time_terminated = ?, "
            "updated = ? WHERE id = ?",
            ((now + 2, now + 2, i) for i in available),
        )
        conn.execute("COMMIT")

    try:
        return {
            "insert": rows / timed(insert),
            "claim": len(available) / timed(claims),
            "finish": len(available) / timed(finishes),
        }
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


async def http_bulk_rate(
    tmp: Path, *, statistics: bool, lists: int, per_list: int, run: int
) -> float:
    name = f"bulk-{int(statistics)}-{run}"
    open_db(tmp / f"{name}.db", statistics=statistics).close()
    server = servers.start_server(tmp, name=name)
    try:
        body = json.dumps([TASK] * per_list).encode()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            # one small list first: connection and caches warm
            async with session.post(
                f"{server.url}/tasks", data=json.dumps([TASK] * 100), headers=server.headers
            ) as resp:
                assert resp.status == 201, await resp.text()
            t0 = time.perf_counter()
            for _ in range(lists):
                async with session.post(
                    f"{server.url}/tasks", data=body, headers=server.headers
                ) as resp:
                    assert resp.status == 201, await resp.text()
                    await resp.read()
            return lists * per_list / (time.perf_counter() - t0)
    finally:
        server.stop()
        for path in tmp.glob(f"{name}.db*"):
            path.unlink()


async def write_cost(tmp: Path, *, writes: int, repeats: int, quick: bool) -> None:
    """Section (a): print the table of rates without and with the triggers."""
    print(f"== (a) write cost of the statistics triggers ({writes:,} rows, best of {repeats})")
    table = []
    rates: dict[bool, dict[str, float]] = {False: {}, True: {}}
    for run in range(repeats):  # interleaved, so both see the same machine
        for with_stats in (False, True):
            got = write_rates(tmp, writes, statistics=with_stats, run=run)
            for kind, rate in got.items():
                rates[with_stats][kind] = max(rate, rates[with_stats].get(kind, 0.0))
    for kind in ("insert", "claim", "finish"):
        without, with_ = rates[False][kind], rates[True][kind]
        table.append([f"{kind} (executemany, 1 txn)", without, with_, (with_ / without - 1) * 100])
    lists, per_list = (2, 5_000) if quick else (10, 10_000)
    http = {False: 0.0, True: 0.0}
    for run in range(repeats):
        for with_stats in (False, True):
            rate = await http_bulk_rate(
                tmp, statistics=with_stats, lists=lists, per_list=per_list, run=run
            )
            http[with_stats] = max(http[with_stats], rate)
    table.append([f"bulk POST /tasks ({lists} x {per_list:,})", http[False], http[True],
                  (http[True] / http[False] - 1) * 100])  # fmt: skip
    printing.print_table(["rows/s", "without", "with triggers", "change %"], table)
