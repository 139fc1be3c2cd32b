"""``make demo``: a local server on the embedded SQLite default, two workers,
and a small example tree of tasks, followed live until Ctrl-C.

Everything it starts it stops again (workers first, then the server), by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from banyan.client import Client
from banyan.client.discovery import client_file, discover
from banyan.errors import BanyanError

BIN = Path(sys.executable).parent
STEP = 'for i in 1 2 3 4; do banyan progress $((i * 25)) "{what} $i/4"; sleep {pause}; done'


def example_tree() -> list[dict[str, object]]:
    stamp = f"{int(time.time()):08x}"  # fresh ids for every demo run
    names = ["pipeline", "prepare", "shard-1", "shard-2", "shard-3", "report"]
    ids = {name: f"{stamp}{n:016x}" for n, name in enumerate(names, start=1)}
    shards = [ids["shard-1"], ids["shard-2"], ids["shard-3"]]
    return [
        {
            "_id": ids["pipeline"],
            "name": "demo pipeline",
            "state": "available",
            "continuations": [ids["prepare"]],
        },
        {
            "_id": ids["prepare"],
            "name": "prepare data",
            "continuations": shards,
            "command": STEP.format(what="preparing", pause=0.5),
            "estimated_runtime": 2,
        },
        *[
            {
                "_id": s,
                "name": f"train shard {i}",
                "continuations": [ids["report"]],
                "command": STEP.format(what=f"training shard {i}", pause=0.5 + i / 2),
                "requested_resources": {"cores": 1, "memory": "64 MiB"},
                "estimated_runtime": 4,
            }
            for i, s in enumerate(shards, start=1)
        ],
        {
            "_id": ids["report"],
            "name": "report",
            "command": "echo all shards trained",
            "estimated_runtime": 1,
        },
        *[
            {
                "name": f"side job {i}",
                "command": f"sleep {i % 3 + 1}",
                "state": "available",
                "queue": "default",
                "priority": i % 3,
            }
            for i in range(6)
        ],
    ]


async def wait_for_server(proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("banyan-server exited; see the messages above")
        with contextlib.suppress(BanyanError):
            async with Client(discover(), timeout_s=2) as client:
                await client.request("GET", "/health")
                return
        await asyncio.sleep(0.2)
    raise SystemExit("banyan-server did not start within 30 s")


async def follow() -> None:
    async with Client(discover()) as client:
        await client.submit(example_tree())
        print(
            "submitted an example tree and six side jobs; following the event feed "
            "(Ctrl-C stops the demo)\n",
            flush=True,
        )
        tui = shutil.which("banyan-tui", path=str(BIN))
        if tui and os.isatty(sys.stdout.fileno()) and os.environ.get("BANYAN_DEMO_NO_TUI") != "1":
            proc = await asyncio.create_subprocess_exec(tui)
            await proc.wait()
            return
        async for event in client.events(types=["task.state", "task.progress"]):
            data = event["data"]
            what = data.get("state") or f"{data.get('percent', '')}% {data.get('message', '')}"
            print(f"{event['time']}  {data.get('name') or data['_id']:<16} {what}", flush=True)


def main() -> int:
    started: list[subprocess.Popen[bytes]] = []
    server = subprocess.Popen([str(BIN / "banyan-server")])
    started.append(server)
    try:
        asyncio.run(wait_for_server(server))
        print(f"server up; client file {client_file()}", flush=True)
        for n in (1, 2):
            started.append(
                subprocess.Popen(
                    [str(BIN / "banyan-worker"), "--name", f"demo-{n}", "--cores", "2"]
                )
            )
        asyncio.run(follow())
    except KeyboardInterrupt:
        pass
    finally:
        for proc in reversed(started):  # workers first, then the server
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
