"""``banyan-tui``: watch and steer a Banyan server in the terminal.

banyan-tui [--server URL]... [--token T] [--ca-cert PATH] [--read-only]

It finds the server, token and CA as every Banyan command does (flags, then
``BANYAN_SERVER``/``BANYAN_TOKEN``/``BANYAN_CA_CERT``, then the local
server's client file). Several servers (``--server`` repeated, or
comma-separated) are standbys: when the one in use cannot be reached the
TUI switches to the next and resumes its event feed there.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from banyan import constants as c
from banyan.client import check_tls
from banyan.client.discovery import Connection, add_connection_options, discover
from banyan.errors import BanyanError

EPILOG = """\
keys: 1-5 or :queues :workers :tasks :tree :detail switch views; / filters
(state:running queue:gpu name~train); enter shows a task; n submits; c cancels
the selected task(s); C cancels a tree; r retries; ? lists every key; q quits.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="banyan-tui",
        description="Watch and steer a Banyan server in the terminal.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_connection_options(parser)
    parser.add_argument(
        "--read-only", action="store_true", help="hide every key that submits, cancels or retries"
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        default=c.HEARTBEAT_INTERVAL_S,
        metavar="S",
        help="the server's heartbeat_interval_s: a worker silent for 1.5 times this is "
        f"shown in yellow (default {c.HEARTBEAT_INTERVAL_S:g})",
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=1000,
        metavar="N",
        help="most rows in the task table; filter to see others (default 1000)",
    )
    return parser


async def run(connection: Connection, args: argparse.Namespace) -> int:
    from tui.app import BanyanApp
    from tui.source import LiveSource

    async with LiveSource(connection) as source:
        app = BanyanApp(
            source,
            read_only=args.read_only,
            heartbeat_interval_s=args.heartbeat_interval,
            row_limit=max(10, args.rows),
        )
        await app.run_async()
    return app.return_code or 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        connection = discover(args.server, args.token, args.ca_cert)
        asyncio.run(check_tls(connection))
    except BanyanError as exc:
        print(f"banyan-tui: {exc.message}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(connection, args))
    except KeyboardInterrupt:
        return 130
