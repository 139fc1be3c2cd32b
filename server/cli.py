"""``banyan-server``: run the server, or manage its tokens.

banyan-server [--host H] [--port P] [--db PATH] [--config PATH] [--tls-cert C --tls-key K]
banyan-server token create --role {admin,provider,worker} --name NAME [--db PATH]
banyan-server token list | token revoke NAME
banyan-server migrate --from PATH.db --to postgresql://USER@HOST:PORT/DB
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import sqlite3
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from pydantic import ValidationError

from banyan.errors import BanyanError
from banyan.logs import LOG_FORMATS, setup_logging, version
from banyan.tls import server_context
from banyan.tokens import Role
from server import stores
from server.app import create_app
from server.bootstrap import ensure_local_admin, local_url
from server.keys import STORE
from server.listening import bind_free_port
from server.settings import Settings, Synchronous
from server.stores import open_store, shown_location

log = logging.getLogger("server")
# Compact: client, request line, status, response bytes, seconds taken.
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tf'

EPILOG = """\
examples:
  banyan-server                          # 127.0.0.1:5100, database under the user data dir
  banyan-server --port 5200 --db /srv/banyan/banyan.db
  banyan-server --host 0.0.0.0 --tls-cert cert.pem --tls-key key.pem   # HTTPS
  banyan-server token create --role provider --name alice
  banyan-server token list
  banyan-server token revoke alice
  banyan-server migrate --from banyan.db --to postgresql://banyan@db1:5432/banyan

Every setting can also come from a TOML file (--config, $BANYAN_CONFIG or
<user config dir>/banyan/config.toml) or a BANYAN_<NAME> environment variable;
the README lists them all.
"""


MIGRATE_HELP = """\
Copy a SQLite database into an empty PostgreSQL database: tasks, attempts,
continuations, logs, usage samples, events (with their seq: feeds resume where
they were), tokens (revoked ones stay revoked), jobs, workers and idempotency
keys. Stop the server first: a file another process has open is refused. The
copy is one PostgreSQL transaction; the row counts of both sides are printed
and compared, and a difference rolls it back (exit 1). A refusal (missing
file, bad URL, non-empty target, unreachable database) is one line, exit 2.
"""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="settings file (TOML)")
    parser.add_argument(
        "--db",
        help="the SQLite database file (or sqlite:///PATH), or a postgresql://USER@HOST/DB URL",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="banyan-server",
        description="Run the Banyan server: the shared task queue, its REST API and feeds.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(parser)
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 5100)")
    parser.add_argument(
        "--tls-cert",
        type=Path,
        metavar="PATH",
        help="PEM certificate (chain): serve HTTPS and WSS; needs --tls-key",
    )
    parser.add_argument(
        "--tls-key", type=Path, metavar="PATH", help="PEM private key of --tls-cert"
    )
    parser.add_argument(
        "--synchronous", choices=[s.value for s in Synchronous], help="SQLite durability"
    )
    parser.add_argument(
        "--log-format", choices=LOG_FORMATS, help="text (default) or json: one object a line"
    )
    sub = parser.add_subparsers(dest="command", metavar="{token,migrate}")
    token = sub.add_parser("token", help="create, list or revoke tokens")
    token_sub = token.add_subparsers(dest="action", required=True, metavar="{create,list,revoke}")
    create = token_sub.add_parser(
        "create", help="make a token; it is printed once, on the last line"
    )
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", required=True, help="who or what the token is for")
    _common(create)
    listing = token_sub.add_parser("list", help="names, roles and dates (never the tokens)")
    _common(listing)
    revoke = token_sub.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name")
    _common(revoke)
    migrate = sub.add_parser(
        "migrate",
        help="copy a SQLite database into an empty PostgreSQL one",
        description=MIGRATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    migrate.add_argument(
        "--from", dest="source", required=True, type=Path, metavar="PATH",
        help="the SQLite database file (opened read-only; no server may have it open)",
    )  # fmt: skip
    migrate.add_argument(
        "--to", dest="target", required=True, metavar="URL",
        help="postgresql://USER@HOST:PORT/DATABASE: an empty database (its schema is created)",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "migrate":
        return _migrate(args)
    try:
        settings = Settings.load(
            config=args.config,
            db=args.db,
            **(
                {}
                if args.command
                else {
                    "host": args.host,
                    "port": args.port,
                    "tls_cert": args.tls_cert,
                    "tls_key": args.tls_key,
                    "synchronous": args.synchronous,
                    "log_format": args.log_format,
                }
            ),
        )
        if args.command == "token":
            return asyncio.run(_tokens(args, settings))
        with contextlib.ExitStack() as held:
            sockets: list[socket.socket] = []
            if settings.port == 0:  # bound here: the port picked is the one announced
                sockets, port = bind_free_port(settings.host)
                for sock in sockets:
                    held.callback(sock.close)
                settings = settings.model_copy(update={"port": port})
            held.enter_context(stores.serving(settings, url=settings.base_url))
            serve(settings, sockets=sockets)
    except BanyanError as exc:
        print(f"banyan-server: {exc.message}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"banyan-server: invalid settings: {_first_issue(exc)}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"banyan-server: invalid settings: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"banyan-server: {_one_line(exc)}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        # Start-up errors are one line (the traceback helps nobody who runs
        # the server); most often the directory is read-only: SQLite must
        # create the -wal and -shm files beside the database.
        print(
            f"banyan-server: cannot open the database {settings.db}: {_one_line(exc)} "
            "(its directory must be writable: SQLite keeps -wal and -shm files beside it)",
            file=sys.stderr,
        )
        return 1
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from server.stores import transfer

    try:
        return transfer.run(args.source, args.target)
    except BanyanError as exc:
        print(f"banyan-server migrate: {exc.message}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _first_issue(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "settings"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {_one_line(Exception(first['msg']))}{more}"


def serve(settings: Settings, *, sockets: Sequence[socket.socket] = ()) -> None:
    """Run the server until a signal stops it: on ``sockets`` (bound and
    listening already, on ``settings.port``), else on ``settings.host`` and
    ``settings.port``."""
    setup_logging(level=settings.log_level, log_format=settings.log_format)
    ssl_context = server_context(settings.tls_cert, settings.tls_key)
    app = create_app(settings)

    client_file: list[Path] = []

    async def local_admin(app: web.Application) -> None:
        client_file.append(await ensure_local_admin(app[STORE], settings, url=local_url(settings)))

    listening: list[bool] = []  # set once it listens: a failed start says one line, no "stopped"

    def announce(*_: object) -> None:
        listening.append(True)
        # run_app calls this once it listens (not before: a port in use must
        # not be announced as listening).
        print(
            f"banyan-server listening on {settings.base_url} "
            f"(database {shown_location(settings.db)}; "
            f"local admin token in {client_file[0]})",
            flush=True,
        )
        log.info(
            "banyan-server %s listening on %s (database %s)",
            version(),
            settings.base_url,
            shown_location(settings.db),
            extra={
                "address": settings.base_url,
                "db": shown_location(settings.db),
                "version": version(),
            },
        )

    async def stopping(app: web.Application) -> None:
        if listening:
            log.info("stopping: closing worker and feed connections")

    async def stopped(app: web.Application) -> None:
        if listening:
            log.info("stopped (database closed)")

    app.on_startup.append(local_admin)
    app.on_shutdown.insert(0, stopping)
    app.on_cleanup.append(stopped)  # after the store's cleanup context
    web.run_app(
        app,
        host=None if sockets else settings.host,
        port=None if sockets else settings.port,
        sock=sockets or None,
        ssl_context=ssl_context,
        print=announce,
        access_log=logging.getLogger("aiohttp.access") if settings.access_log else None,
        access_log_format=ACCESS_LOG_FORMAT,
        shutdown_timeout=10,
    )


async def _tokens(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings)
    await store.open()
    try:
        if args.action == "create":
            token = await store.create_token(args.name, Role(args.role))
            print(f"created {args.role} token {args.name!r} (shown once; keep it safe):")
            print(token)
        elif args.action == "list":
            print("NAME\tROLE\tCREATED (UTC)\tSTATUS")
            for info in await store.list_tokens():
                created = datetime.fromtimestamp(info.created, UTC).strftime("%Y-%m-%d %H:%M")
                status = "revoked" if info.revoked else "active"
                print(f"{info.name}\t{info.role.value}\t{created}\t{status}")
        else:
            await store.revoke_token(args.name)
            print(f"revoked token {args.name!r}")
    finally:
        await store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
