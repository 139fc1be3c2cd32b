"""``banyan progress``: used from inside a running task, it reports the task's
progress to the worker that runs it (over the worker's socket), not to the server."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from typing import Any

from banyan.constants import PROGRESS_SOCKET_ENV

PROGRESS_EPILOG = """\
examples (inside a task started by banyan-worker):
  banyan progress 40 "loading data"
  banyan progress 100
"""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    # No connection options: it talks to the worker, not the server.
    progress = sub.add_parser(
        "progress",
        help="report the running task's progress (inside a task)",
        description="Report the progress of the task this runs in (to its worker).",
        epilog=PROGRESS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    progress.add_argument("percent", type=float, help="0 to 100")
    progress.add_argument("message", nargs="?", help="what the task is doing")
    progress.set_defaults(handler=None)


def report_progress(percent: float, message: str | None) -> None:
    """Send one progress line to the worker that runs this task."""
    path = os.environ.get(PROGRESS_SOCKET_ENV)
    task = os.environ.get("BANYAN_TASK_ID")
    if not path or not task:
        raise RuntimeError("not inside a Banyan task (BANYAN_PROGRESS_SOCKET is not set)")
    if not 0 <= percent <= 100:
        raise ValueError(f"percent must be between 0 and 100, got {percent:g}")
    line = json.dumps({"task": task, "percent": percent, "message": message}) + "\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(line.encode())
        answer = sock.recv(64)
    if answer.strip() != b"ok":
        raise RuntimeError("the worker did not accept the progress report")


def run(args: argparse.Namespace) -> int:
    try:
        report_progress(args.percent, args.message)
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"banyan progress: {exc}", file=sys.stderr)
        return 2
    return 0
