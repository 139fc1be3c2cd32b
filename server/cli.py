"""``banyan-server``: run the server, or manage its tokens.

banyan-server [--host H] [--port P] [--db PATH] [--config PATH] [--tls-cert C --tls-key K]
banyan-server token create --role {admin,provider,worker} --name NAME [--db PATH]
banyan-server token list | token revoke NAME
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from banyan.errors import BanyanError
from banyan.tls import server_context
from banyan.tokens import Role
from server.app import create_app
from server.bootstrap import ensure_local_admin, local_url
from server.keys import STORE
from server.settings import Settings, Synchronous
from server.stores import open_store

EPILOG = """\
examples:
  banyan-server                          # 127.0.0.1:5100, database under the user data dir
  banyan-server --port 5200 --db /srv/banyan/banyan.db
  banyan-server --host 0.0.0.0 --tls-cert cert.pem --tls-key key.pem   # HTTPS
  banyan-server token create --role provider --name alice
  banyan-server token list
  banyan-server token revoke alice

Every setting can also come from a TOML file (--config, $BANYAN_CONFIG or
<user config dir>/banyan/config.toml) or a BANYAN_<NAME> environment variable;
the README lists them all.
"""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="settings file (TOML)")
    parser.add_argument("--db", help="the SQLite database file (or sqlite:///PATH)")


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
    sub = parser.add_subparsers(dest="command", metavar="{token}")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
                }
            ),
        )
        if args.command == "token":
            return asyncio.run(_tokens(args, settings))
        serve(settings)
    except BanyanError as exc:
        print(f"banyan-server: {exc.message}", file=sys.stderr)
        return 2
    except ValueError as exc:  # pydantic's ValidationError is one
        print(f"banyan-server: invalid settings: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"banyan-server: {exc}", file=sys.stderr)
        return 1
    return 0


def serve(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    ssl_context = server_context(settings.tls_cert, settings.tls_key)
    app = create_app(settings)

    async def announce(app: web.Application) -> None:
        path = await ensure_local_admin(app[STORE], settings, url=local_url(settings))
        print(
            f"banyan-server listening on {settings.base_url} (database {settings.db}; "
            f"local admin token in {path})",
            flush=True,
        )

    app.on_startup.append(announce)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        ssl_context=ssl_context,
        print=None,
        access_log=None,
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
