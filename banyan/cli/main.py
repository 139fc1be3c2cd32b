"""``banyan``: the command line for people and scripts.

Each command is a module of ``banyan.cli`` named after it, with an
``add_parser(sub, parents)`` that registers its options and handler:
``submit``, ``ls``, ``show``, ``tree``, ``cancel``, ``retry``, ``wait``,
``logs``, ``events``, ``workers``, ``stats`` and ``progress`` (used from
inside a running task: it talks to the worker, not the server). A new
command is a new module plus one entry in ``COMMANDS``.

This module composes the parser, runs the chosen command on one event loop and
turns every error into one line on stderr and an exit status:

- 0 success; 1 a task failed, an id is unknown, a change was refused (409);
- 2 the server cannot be reached, the token is refused, invalid input;
- 3 ``wait --timeout`` passed; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from banyan.cli import (
    cancel,
    events,
    logs,
    ls,
    progress,
    retry,
    show,
    stats,
    submit,
    tree,
    wait,
    workers,
)
from banyan.cli.context import Context
from banyan.cli.output import Output, warn
from banyan.client.discovery import add_connection_options
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

# The commands in the order ``banyan --help`` lists them.
COMMANDS: tuple[ModuleType, ...] = (
    submit,
    ls,
    show,
    tree,
    cancel,
    retry,
    wait,
    logs,
    events,
    workers,
    stats,
    progress,
)

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
($BANYAN_CLIENT_FILE or ~/.local/share/banyan/client.json). Several servers
(--server A --server B, or BANYAN_SERVER=A,B) are tried in order: when one
cannot be reached the next is used. For an https:// server, --ca-cert or
$BANYAN_CA_CERT names the CA to trust (default: the system's trust store).
Every command takes --json for machine-readable output.

exit status: 0 ok; 1 a task failed or was cancelled, unknown id, refused
change; 2 server unreachable, bad token, invalid input; 3 wait timed out;
130 interrupted.
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
    for command in COMMANDS:
        command.add_parser(sub, parents)
    return parser


def error_message(exc: BanyanError, ctx: Context) -> str:
    message = " ".join(str(exc.message).split())  # one line, whatever the server sent
    if isinstance(exc, Unauthorized) and ctx.server_url is not None:
        message += f" (server {ctx.server_url}; check --token or $BANYAN_TOKEN)"
    return message


def exit_status(exc: BanyanError) -> int:
    return 2 if isinstance(exc, _EXIT_2) else 1


class _Notes(logging.Handler):
    """The client library's notes (a retry it waits for) as the CLI's own
    lines, on whatever ``sys.stderr`` is when they come."""

    def emit(self, record: logging.LogRecord) -> None:
        warn(record.getMessage())


def _show_client_notes() -> None:
    client_log = logging.getLogger("banyan.client")
    if not any(isinstance(h, _Notes) for h in client_log.handlers):
        client_log.addHandler(_Notes(logging.WARNING))
        client_log.setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else 0
    if args.handler is None:
        return progress.run(args)
    ctx = Context(args, Output(json_mode=bool(args.json)))
    import asyncio  # here: --help and usage errors need no event loop

    _show_client_notes()

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
