"""Persistence: the ``Store`` interface (``base``) and one folder per backend.

``open_store`` picks the backend from the ``db`` setting: a plain path or
``sqlite:///path`` is SQLite; ``postgresql://`` (or ``postgres://``) is
PostgreSQL, the location being the rest of the URL. A new backend is a new folder with a
``from_settings(location, settings)`` plus one line in ``BACKENDS``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
from typing import Final

from banyan.errors import InvalidInput
from server.settings import Settings
from server.stores.base import Store

# URL scheme → the backend package (imported only when chosen).
BACKENDS: Final = {
    "sqlite": "server.stores.sqlite",
    "postgresql": "server.stores.postgres",
}
# Other spellings of a scheme in BACKENDS.
ALIASES: Final = {"postgres": "postgresql"}
# Schemes a later release will serve: refused with a clear one-line message.
NOT_YET: Final[dict[str, str]] = {}


def parse_location(db: str | os.PathLike[str]) -> tuple[str, str]:
    """``(scheme, location)`` of a ``db`` setting; a plain path is SQLite. As
    SQLAlchemy spells it: ``sqlite:///b.db`` is the relative path ``b.db``,
    ``sqlite:////var/b.db`` the absolute ``/var/b.db``."""
    text = os.fspath(db)
    scheme, sep, rest = text.partition("://")
    if not sep or "/" in scheme or os.sep in scheme:
        return "sqlite", text
    scheme = ALIASES.get(scheme.lower(), scheme.lower())
    if scheme == "sqlite":
        return scheme, rest[1:] if rest.startswith("/") else rest
    return scheme, rest


def shown_location(db: str | os.PathLike[str]) -> str:
    """``db`` as logs may show it: a URL's password replaced by ``***``."""
    text = os.fspath(db)
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):[^@/]*@", r"\1:***@", text)


def open_store(settings: Settings) -> Store:
    """The store the ``db`` setting names (not opened yet); ``InvalidInput``
    for a backend this server does not have."""
    scheme, location = parse_location(settings.db)
    if scheme in NOT_YET:
        raise InvalidInput(
            f"db: the {NOT_YET[scheme]} store is not available yet; "
            "give a SQLite file path or sqlite:///PATH",
            issues={"db": "unsupported backend"},
        )
    module = BACKENDS.get(scheme)
    if module is None:
        known = ", ".join(f"{s}://" for s in BACKENDS)
        raise InvalidInput(
            f"db: unknown database scheme {scheme}://; known: {known} (or a file path)",
            issues={"db": "unknown scheme"},
        )
    backend = importlib.import_module(module)
    store: Store = backend.from_settings(location, settings)
    return store


def serving(settings: Settings, *, url: str) -> contextlib.AbstractContextManager[None]:
    """What a server holds while it serves the ``db`` setting: a backend that
    only one server at a time may serve (SQLite) defines ``serving(location,
    url=)``, which refuses a second with ``Conflict``; a backend without it
    (PostgreSQL) lets several servers share the database."""
    scheme, location = parse_location(settings.db)
    module = BACKENDS.get(scheme)
    hold = getattr(importlib.import_module(module), "serving", None) if module else None
    if hold is None:
        return contextlib.nullcontext()
    held: contextlib.AbstractContextManager[None] = hold(location, url=url)
    return held
