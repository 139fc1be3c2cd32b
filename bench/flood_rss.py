"""Server memory after a flood of tasks with 4 KB names (issue 11).

    .venv/bin/python bench/flood_rss.py [--tasks N] [--batch B] [--quick]

A ``banyan-server`` on 127.0.0.1 (temp db) with one live ``/events``
subscriber that reads everything (so the feed's ring fills, as in a cluster
with a TUI open). One provider posts N tasks (default 50,000; 5,000 with
--quick) in bulk POSTs of B (default 2,500), each named with 1,024 four-byte
characters (4 KB of UTF-8). Printed: the server's RSS once it answers, after
the subscriber has received every ``task.created`` and the server is idle,
and the growth. The feed ring holds at most ``event_buffer_bytes`` (64 MiB by
default) of encoded events; before that bound it held up to 100,000 decoded
events of any size.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import tempfile
from pathlib import Path

import aiohttp
import psutil

try:
    from bench import printing, servers
except ImportError:  # run as a script: put the repository root (bench/, testbed/) on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import printing, servers

NAME = "\N{MUSICAL SYMBOL G CLEF}" * 1024  # 4 bytes each in UTF-8


async def flood(server: servers.BenchServer, tasks: int, batch: int, max_s: float) -> int:
    """Post ``tasks`` tasks while one subscriber reads the feed; returns events seen."""
    seen = 0
    async with aiohttp.ClientSession(headers=server.headers) as session:
        ws = await session.ws_connect(
            f"{server.url}/events", params={"types": "task.created"}, max_msg_size=0
        )
        await ws.receive()  # feed.hello

        async def read() -> None:
            nonlocal seen
            while seen < tasks:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"the feed closed: {msg}")
                seen += 1

        reader = asyncio.create_task(read())
        body = json.dumps([{"command": "true", "name": NAME}] * batch, ensure_ascii=False)
        for _ in range(tasks // batch):
            async with session.post(f"{server.url}/tasks", data=io.BytesIO(body.encode())) as r:
                if r.status != 201:
                    raise RuntimeError(f"POST /tasks: {r.status} {await r.text()}")
        try:
            await asyncio.wait_for(reader, timeout=max_s)
        finally:
            await ws.close()
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=2_500)
    parser.add_argument("--quick", action="store_true", help="5,000 tasks")
    parser.add_argument("--max-s", type=float, default=600.0, help="bound on the flood")
    args = parser.parse_args()
    tasks = 5_000 if args.quick else args.tasks
    with tempfile.TemporaryDirectory(prefix="banyan-flood-") as tmp:
        server = servers.start_server(Path(tmp), name="flood")
        try:
            proc = psutil.Process(server.pid)
            before = proc.memory_info().rss
            seen = asyncio.run(flood(server, tasks, args.batch, args.max_s))
            server.wait_idle()
            after = proc.memory_info().rss
        finally:
            server.stop()
    mib = 1024 * 1024
    printing.print_table(
        ["tasks (4 KB names)", "events received", "RSS before", "RSS after", "growth"],
        [
            [
                tasks,
                seen,
                f"{before / mib:.0f} MiB",
                f"{after / mib:.0f} MiB",
                f"{(after - before) / mib:.0f} MiB",
            ]
        ],
    )
    print(json.dumps({"tasks": tasks, "rss_before": before, "rss_after": after}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
