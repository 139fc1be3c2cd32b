"""``banyan``: the command line for people and scripts.

Commands: ``submit``, ``ls``, ``show``, ``tree``, ``cancel``, ``retry``,
``wait``, ``logs``, ``workers``, ``stats``, ``events`` (each in a
``banyan/cli_*.py`` module) and ``progress`` (here: used from inside a
running task, it talks to the worker, not the server).

This module builds the parser, runs the chosen command on one event loop and
turns every error into one line on stderr and an exit status:

- 0 success; 1 a task failed, an id is unknown, a change was refused (409);
- 2 the server cannot be reached, the token is refused, invalid input;
- 3 ``wait --timeout`` passed; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from collections.abc import Sequence
from typing import NoReturn

from banyan import cli_cluster, cli_submit, cli_tasks, cli_wait
from banyan.cli_common import Context
from banyan.cli_output import Output, warn
from banyan.constants import PROGRESS_SOCKET_ENV
from banyan.discovery import add_connection_options
from banyan.errors import (
    BadRequest,
    BanyanError,
    Forbidden,
    InvalidInput,
    ServerUnreachable,
    Unauthorized,
    Unavailable,
)

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
# Statuses that mean "cannot talk to the server as this user" or "bad input": 2.
_EXIT_2 = (ServerUnreachable, Unauthorized, Forbidden, InvalidInput, BadRequest, Unavailable)

EPILOG = """\
examples:
  banyan submit --cores 2 --memory "4 GiB" -- ./train.sh
  banyan submit --array 1-100 --wait -- 'python sim.py --seed $BANYAN_TASK_INDEX'
  banyan ls --all
  banyan show ID; banyan tree ID; banyan logs -f ID
  banyan wait ID... --timeout 1h
  banyan cancel --tree ID
  banyan workers; banyan stats
  banyan events --since 0 --count 10

The server and token come from --server/--token, else $BANYAN_SERVER /
$BANYAN_TOKEN, else the file a local banyan-server writes
($BANYAN_CLIENT_FILE or ~/.local/share/banyan/client.json). For an https://
server, --ca-cert or $BANYAN_CA_CERT names the CA to trust (default: the
system's trust store).
Every command takes --json for machine-readable output.

exit status: 0 ok; 1 a task failed or was cancelled, unknown id, refused
change; 2 server unreachable, bad token, invalid input; 3 wait timed out;
130 interrupted.
"""

PROGRESS_EPILOG = """\
examples (inside a task started by banyan-worker):
  banyan progress 40 "loading data"
  banyan progress 100
"""


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, as every other CLI error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _connection_options(parser: argparse.ArgumentParser, *, default: object) -> None:
    add_connection_options(parser, default=default)
    parser.add_argument(
        "--json", action="store_true", default=default, help="machine-readable JSON output"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="banyan",
        description="Submit, watch and cancel Banyan tasks.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _connection_options(parser, default=None)
    parser.set_defaults(json=False)
    # The same options after the command name ("banyan ls --json"); SUPPRESS
    # keeps a subcommand from overwriting what was given before it.
    common = Parser(add_help=False)
    _connection_options(common, default=argparse.SUPPRESS)
    parents: list[argparse.ArgumentParser] = [common]
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_submit.add_parser(sub, parents)
    cli_tasks.add_parsers(sub, parents)
    cli_wait.add_parsers(sub, parents)
    cli_cluster.add_parsers(sub, parents)
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
    return parser


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


def _progress(args: argparse.Namespace) -> int:
    try:
        report_progress(args.percent, args.message)
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"banyan progress: {exc}", file=sys.stderr)
        return 2
    return 0


def error_message(exc: BanyanError, ctx: Context) -> str:
    message = " ".join(str(exc.message).split())  # one line, whatever the server sent
    if isinstance(exc, Unauthorized) and ctx.server_url is not None:
        message += f" (server {ctx.server_url}; check --token or $BANYAN_TOKEN)"
    return message


def exit_status(exc: BanyanError) -> int:
    return 2 if isinstance(exc, _EXIT_2) else 1


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else 0
    if args.handler is None:
        return _progress(args)
    ctx = Context(args, Output(json_mode=bool(args.json)))
    try:
        return int(asyncio.run(args.handler(ctx)))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BanyanError as exc:
        warn(error_message(exc, ctx))
        return exit_status(exc)
    except BrokenPipeError:
        # The reader went away (banyan ls | head): stop quietly, and keep
        # Python from complaining when it flushes stdout at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        if os.environ.get("BANYAN_DEBUG"):
            raise
        warn(f"internal error: {type(exc).__name__}: {exc} (BANYAN_DEBUG=1 shows a traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
