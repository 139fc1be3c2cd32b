"""Zero-config local use: on start the server makes sure a local admin token
exists and writes ``{"server": url, "token": ...}`` (mode 0600) to the client
file, where ``banyan``, ``banyan-worker`` and ``banyan-tui`` look first.

Serving HTTPS, the URL is ``https://`` and the file also names the server's
certificate as ``ca_cert``, so local clients trust it (a self-signed one
too) without ``--ca-cert``."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from banyan.constants import LOCAL_ADMIN_TOKEN_NAME
from banyan.errors import NotFound
from banyan.tokens import Role
from server.settings import Settings
from server.stores.base import Store


def read_client_file(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (created 0600, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def local_url(settings: Settings) -> str:
    """The URL a client on this machine uses: ``base_url``, with a wildcard
    listening address (``0.0.0.0``, ``::``) replaced by the loopback one."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(settings.host)
    if host is None:
        return settings.base_url
    return settings.model_copy(update={"host": host}).base_url


async def ensure_local_admin(store: Store, settings: Settings, *, url: str) -> Path:
    """Reuse the token in the client file if the store still accepts it, else
    make a new local admin token; write the file with the current URL (and,
    serving HTTPS, the certificate to trust)."""
    path = settings.client_file
    token = read_client_file(path).get("token")
    caller = await store.verify_token(token) if token else None
    if caller is None or caller.role is not Role.ADMIN:
        with contextlib.suppress(NotFound):
            await store.revoke_token(LOCAL_ADMIN_TOKEN_NAME)
        token = await store.create_token(LOCAL_ADMIN_TOKEN_NAME, Role.ADMIN)
    saved = {"server": url, "token": token}
    if settings.tls_cert is not None and url.startswith("https://"):
        saved["ca_cert"] = str(settings.tls_cert.resolve())
    write_private(path, json.dumps(saved, indent=2) + "\n")
    return path
