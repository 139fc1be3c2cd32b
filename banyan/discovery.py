"""Where the server is and which token to use, for every client (CLI,
worker, TUI): flags, then ``BANYAN_SERVER``/``BANYAN_TOKEN``, then the client
file the local server writes (``$BANYAN_CLIENT_FILE`` or
``<user data dir>/banyan/client.json``), then ``http://127.0.0.1:5100``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from banyan.constants import CLIENT_FILE_NAME, DEFAULT_HOST, DEFAULT_PORT
from banyan.errors import Unauthorized
from banyan.settings import data_dir


@dataclass(frozen=True)
class Connection:
    server: str
    token: str

    @property
    def ws_base(self) -> str:
        if self.server.startswith("https://"):
            return "wss://" + self.server.removeprefix("https://")
        return "ws://" + self.server.removeprefix("http://")


def client_file() -> Path:
    env = os.environ.get("BANYAN_CLIENT_FILE")
    return Path(env) if env else data_dir() / CLIENT_FILE_NAME


def discover(server: str | None = None, token: str | None = None) -> Connection:
    saved: dict[str, str] = {}
    path = client_file()
    try:
        loaded = json.loads(path.read_text())
        if isinstance(loaded, dict):
            saved = {k: str(v) for k, v in loaded.items()}
    except (OSError, ValueError):
        pass
    url = server or os.environ.get("BANYAN_SERVER") or saved.get("server")
    url = (url or f"http://{DEFAULT_HOST}:{DEFAULT_PORT}").rstrip("/")
    if "://" not in url:
        url = "http://" + url
    secret = token or os.environ.get("BANYAN_TOKEN") or saved.get("token")
    if not secret:
        raise Unauthorized(
            f"no token: pass --token, set BANYAN_TOKEN, or run banyan-server on this "
            f"machine (it writes {path})"
        )
    return Connection(server=url, token=secret)
