"""The SQLite backend: the Store on one SQLite file in WAL mode, with a writer
thread and group commit (``db``), the schema and its migrations (``schema``),
and its SQL named in ``queries``."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.settings import Settings
    from server.stores.base import Store


def from_settings(location: str, settings: Settings) -> Store:
    """The store for ``location`` (a file path), configured from ``settings``."""
    from server.stores.sqlite.store import SqliteStore

    return SqliteStore(
        Path(location),
        synchronous=settings.synchronous.value,
        batch_max_ops=settings.commit_batch_max_ops,
        require_if_match=settings.require_if_match,
    )


def serving(location: str, *, url: str) -> contextlib.AbstractContextManager[None]:
    """The lock a server holds while it serves ``location`` (one at a time)."""
    from server.stores.sqlite.serving import serving as hold

    return hold(Path(location), url=url)
