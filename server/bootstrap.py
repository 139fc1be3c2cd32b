"""Zero-config local use: on start the server makes sure a local admin token
exists and writes ``{"server": url, "token": ...}`` (mode 0600) to the client
file, where ``banyan``, ``banyan-worker`` and ``banyan-tui`` look first.

Serving HTTPS, the URL is ``https://`` and the file also names the server's
certificate as ``ca_cert``, so local clients trust it (a self-signed one
too) without ``--ca-cert``."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
from pathlib import Path

from banyan.constants import LOCAL_ADMIN_TOKEN_NAME
from banyan.errors import NotFound
from banyan.tokens import Role
from server.domain.tokens import NAME_MAX
from server.settings import Settings
from server.stores.base import Store
from server.stores.cluster import SharedStore


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
    serving HTTPS, the certificate to trust).

    A revoked token's name is never given again, so each new local admin
    token has a name of its own: ``local-admin@HOST``, then
    ``local-admin@HOST-2``… The ones it replaces are revoked: on a store only
    this server serves (SQLite), every earlier local admin token (the file
    was lost or its token revoked: whoever copied it loses it); on a shared
    one (several servers), only the one this server's file names, so a
    server never takes the local token of another."""
    path = settings.client_file
    saved_before = read_client_file(path)
    token = saved_before.get("token")
    caller = await store.verify_token(token) if token else None
    name = saved_before.get("token_name", "")
    if caller is None or caller.role is not Role.ADMIN:
        name, token = await _new_local_admin(
            store, shared=isinstance(store, SharedStore), previous=name
        )
    saved = {"server": url, "token": token}
    if name:
        saved["token_name"] = name
    if settings.tls_cert is not None and url.startswith("https://"):
        saved["ca_cert"] = str(settings.tls_cert.resolve())
    write_private(path, json.dumps(saved, indent=2) + "\n")
    return path


def _is_local_admin(name: str) -> bool:
    return name == LOCAL_ADMIN_TOKEN_NAME or name.startswith(LOCAL_ADMIN_TOKEN_NAME + "@")


async def _new_local_admin(store: Store, *, shared: bool, previous: str) -> tuple[str, str]:
    """Revoke what the new local admin token replaces; make it: (name, token)."""
    tokens = await store.list_tokens()
    replaced = {
        info.name
        for info in tokens
        if not info.revoked and (info.name == previous if shared else _is_local_admin(info.name))
    }
    for old in sorted(replaced):
        with contextlib.suppress(NotFound):  # revoked meanwhile (another process)
            await store.revoke_token(old)
    host = "".join(c for c in socket.gethostname() if c.isprintable() and c != " ") or "localhost"
    base = f"{LOCAL_ADMIN_TOKEN_NAME}@{host}"[: NAME_MAX - 8]
    taken = {info.name for info in tokens}
    names = itertools.chain([base], (f"{base}-{k}" for k in itertools.count(2)))
    name = next(n for n in names if n not in taken)
    return name, await store.create_token(name, Role.ADMIN)
