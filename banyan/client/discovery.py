"""Where the server is, which token to use and which certificates to trust,
for every client (CLI, worker, TUI): flags, then ``BANYAN_SERVER`` /
``BANYAN_TOKEN`` / ``BANYAN_CA_CERT``, then the client file the local server
writes (``$BANYAN_CLIENT_FILE`` or ``<user data dir>/banyan/client.json``),
then ``http://127.0.0.1:5100`` and the system's trust store.

Several servers (failover): ``--server`` given more than once, or URLs
separated by commas (``BANYAN_SERVER=http://a:5100,http://b:5100``). The
first is used until it cannot be reached, then the next, in order
(``Connection.failover``; the client and the worker do the switching). An
empty or malformed URL in the list is ``InvalidInput``, before anything is
sent.

The client file's ``ca_cert`` is for the server that file names: it is not
used when the URLs come from a flag or ``BANYAN_SERVER`` and none is that one."""

from __future__ import annotations

import argparse
import json
import os
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from banyan.client.tls import client_context
from banyan.constants import CLIENT_FILE_NAME, DEFAULT_HOST, DEFAULT_PORT
from banyan.errors import InvalidInput, Unauthorized
from banyan.paths import data_dir

if TYPE_CHECKING:
    import ssl

CA_CERT_ENV = "BANYAN_CA_CERT"


@dataclass(frozen=True)
class Connection:
    """Where to connect and as whom. ``server`` is the one in use;
    ``fallbacks`` are the others, tried in order when it cannot be reached."""

    server: str
    token: str
    ca_cert: Path | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)
    fallbacks: tuple[str, ...] = ()

    @property
    def ws_base(self) -> str:
        return ws_url(self.server)

    @property
    def servers(self) -> tuple[str, ...]:
        """Every server, the one in use first."""
        return (self.server, *self.fallbacks)

    def failover(self) -> Connection:
        """The same connection on the next server; the one in use goes last
        (so a full round tries each once). Itself when there is no other."""
        if not self.fallbacks:
            return self
        return replace(self, server=self.fallbacks[0], fallbacks=(*self.fallbacks[1:], self.server))

    @property
    def ssl(self) -> ssl.SSLContext | bool:
        """For aiohttp's ``ssl=``: the ``--ca-cert`` context, else ``True``
        (verify against the system's trust store)."""
        return self.ssl_context if self.ssl_context is not None else True


def client_file() -> Path:
    env = os.environ.get("BANYAN_CLIENT_FILE")
    return Path(env) if env else data_dir() / CLIENT_FILE_NAME


def ws_url(server: str) -> str:
    """The websocket URL (``ws://``, ``wss://``) of an ``http(s)://`` server URL."""
    if server.startswith("https://"):
        return "wss://" + server.removeprefix("https://")
    return "ws://" + server.removeprefix("http://")


def _normal(url: str) -> str:
    url = url if "://" in url else "http://" + url
    return url.rstrip("/")


def server_urls(texts: Sequence[str], *, source: str) -> tuple[str, ...]:
    """The URLs in ``texts`` (each one URL or several separated by commas),
    normalised (``http://`` added, no trailing ``/``), in order, without
    repeats. ``InvalidInput`` naming ``source`` for an empty or malformed one."""
    urls: list[str] = []
    for text in texts:
        for part in text.split(","):
            urls.append(_checked_url(part.strip(), whole=text, source=source))
    return tuple(dict.fromkeys(urls))


def _checked_url(text: str, *, whole: str, source: str) -> str:
    example = "e.g. http://head:5100; several: repeat --server or separate them with commas"
    if not text:
        raise InvalidInput(
            f"empty server URL in {source} ({whole!r}): {example}", issues={"server": whole}
        )
    url = _normal(text)
    parts = urllib.parse.urlsplit(url)
    problem = None
    if parts.scheme not in ("http", "https"):
        problem = f"the scheme must be http or https, not {parts.scheme!r}"
    elif any(c.isspace() for c in text):
        problem = "it contains a space"
    elif not parts.hostname:
        problem = "it names no host"
    elif parts.query or parts.fragment:
        problem = "a server URL has no ?query or #fragment"
    else:
        try:
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            problem = "the port is not a number from 0 to 65535"
    if problem is not None:
        raise InvalidInput(
            f"malformed server URL {text!r} in {source}: {problem} ({example})",
            issues={"server": text},
        )
    return url


def _servers(
    server: str | Sequence[str] | None, saved: dict[str, str], path: Path
) -> tuple[str, ...]:
    """The server URLs from the flags, else ``BANYAN_SERVER``, else the client
    file, else the default local one."""
    given = [server] if isinstance(server, str) else list(server or [])
    if given:
        return server_urls(given, source="--server")
    env = os.environ.get("BANYAN_SERVER", "")
    if env.strip():  # set but empty: as if unset, like every BANYAN_* variable
        return server_urls([env], source="$BANYAN_SERVER")
    if saved.get("server"):
        return server_urls([saved["server"]], source=str(path))
    return (f"http://{DEFAULT_HOST}:{DEFAULT_PORT}",)


def discover(
    server: str | Sequence[str] | None = None,
    token: str | None = None,
    ca_cert: str | Path | None = None,
) -> Connection:
    """The connection the flags (``server``: one URL, several separated by
    commas, or a list of them), the environment and the client file say."""
    saved: dict[str, str] = {}
    path = client_file()
    try:
        loaded = json.loads(path.read_text())
        if isinstance(loaded, dict):
            saved = {k: str(v) for k, v in loaded.items()}
    except (OSError, ValueError):
        pass
    urls = _servers(server, saved, path)
    url, fallbacks = urls[0], urls[1:]
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
    elif saved.get("ca_cert") and _normal(saved.get("server", "")) in urls:
        trust, source = Path(saved["ca_cert"]), f"ca_cert in {path}"
    else:
        return Connection(server=url, token=secret, fallbacks=fallbacks)
    return Connection(
        server=url,
        token=secret,
        ca_cert=trust,
        ssl_context=client_context(trust, source=source),
        fallbacks=fallbacks,
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
        action="append",
        default=default,
        metavar="URL",
        help="server URL; repeat it (or separate URLs with commas) for standby servers, "
        "tried in order when the one in use cannot be reached (default: $BANYAN_SERVER, "
        "comma-separated too, or the local one)",
    )
    parser.add_argument("--token", default=default, help=token_help)
    parser.add_argument(
        "--ca-cert",
        default=default,
        metavar="PATH",
        help="PEM file of the CA (or self-signed certificate) to trust for an https:// "
        "server (default: $BANYAN_CA_CERT, else the system's trust store)",
    )
