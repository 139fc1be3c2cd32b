"""Where the server is, which token to use and which certificates to trust,
for every client (CLI, worker, TUI): flags, then ``BANYAN_SERVER`` /
``BANYAN_TOKEN`` / ``BANYAN_CA_CERT``, then the client file the local server
writes (``$BANYAN_CLIENT_FILE`` or ``<user data dir>/banyan/client.json``),
then ``http://127.0.0.1:5100`` and the system's trust store.

The client file's ``ca_cert`` is for the server that file names: it is not
used when the URL comes from a flag or ``BANYAN_SERVER`` and names another."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from banyan.client.tls import client_context
from banyan.constants import CLIENT_FILE_NAME, DEFAULT_HOST, DEFAULT_PORT
from banyan.errors import Unauthorized
from banyan.paths import data_dir

if TYPE_CHECKING:
    import ssl

CA_CERT_ENV = "BANYAN_CA_CERT"


@dataclass(frozen=True)
class Connection:
    server: str
    token: str
    ca_cert: Path | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)

    @property
    def ws_base(self) -> str:
        if self.server.startswith("https://"):
            return "wss://" + self.server.removeprefix("https://")
        return "ws://" + self.server.removeprefix("http://")

    @property
    def ssl(self) -> ssl.SSLContext | bool:
        """For aiohttp's ``ssl=``: the ``--ca-cert`` context, else ``True``
        (verify against the system's trust store)."""
        return self.ssl_context if self.ssl_context is not None else True


def client_file() -> Path:
    env = os.environ.get("BANYAN_CLIENT_FILE")
    return Path(env) if env else data_dir() / CLIENT_FILE_NAME


def _normal(url: str) -> str:
    url = url.rstrip("/")
    return url if "://" in url else "http://" + url


def discover(
    server: str | None = None, token: str | None = None, ca_cert: str | Path | None = None
) -> Connection:
    saved: dict[str, str] = {}
    path = client_file()
    try:
        loaded = json.loads(path.read_text())
        if isinstance(loaded, dict):
            saved = {k: str(v) for k, v in loaded.items()}
    except (OSError, ValueError):
        pass
    url = server or os.environ.get("BANYAN_SERVER") or saved.get("server")
    url = _normal(url or f"http://{DEFAULT_HOST}:{DEFAULT_PORT}")
    secret = token or os.environ.get("BANYAN_TOKEN") or saved.get("token")
    if not secret:
        raise Unauthorized(
            f"no token: pass --token, set BANYAN_TOKEN, or run banyan-server on this "
            f"machine (it writes {path})"
        )
    if ca_cert:
        trust, source = Path(ca_cert), "--ca-cert"
    elif os.environ.get(CA_CERT_ENV):
        trust, source = Path(os.environ[CA_CERT_ENV]), CA_CERT_ENV
    elif saved.get("ca_cert") and _normal(saved.get("server", "")) == url:
        trust, source = Path(saved["ca_cert"]), f"ca_cert in {path}"
    else:
        return Connection(server=url, token=secret)
    return Connection(
        server=url,
        token=secret,
        ca_cert=trust,
        ssl_context=client_context(trust, source=source),
    )


def add_connection_options(
    parser: argparse.ArgumentParser,
    *,
    token_help: str = "token (default: $BANYAN_TOKEN or the local one)",
    default: object = None,
) -> None:
    """``--server``, ``--token`` and ``--ca-cert``, the flags every client reads
    before the environment and the client file (see ``discover``)."""
    parser.add_argument(
        "--server",
        default=default,
        metavar="URL",
        help="server URL (default: $BANYAN_SERVER or the local one)",
    )
    parser.add_argument("--token", default=default, help=token_help)
    parser.add_argument(
        "--ca-cert",
        default=default,
        metavar="PATH",
        help="PEM file of the CA (or self-signed certificate) to trust for an https:// "
        "server (default: $BANYAN_CA_CERT, else the system's trust store)",
    )
