"""Is the database still writable, and still the file the server opened?

``GET /health`` answers ``degraded`` (503) with the reasons while one of
these holds, and ``ok`` again once none does:

- writes are failing: the last write transaction was rolled back by SQLite
  itself (disk full, file size limit, I/O error, read-only) and none has
  succeeded since;
- the file system holding the database is full (no block available) or
  mounted read-only, or the database or its directory is not writable;
- the database file or its ``-wal`` file was deleted or replaced (its
  device and inode are no longer those recorded at start-up).

The last one is not transient: the server's connections still write to the
old, unlinked files, so an acknowledged write would be lost at the next
restart (a ``kill -9`` once lost 73 that way). The watch then checkpoints
what the WAL holds into the database file and makes the database refuse
every write with 503 until the server is restarted.

The checks are a few ``stat`` calls: run on every ``/health`` and every
``period_s`` (1 s) in the background. The database is anything with the
attributes of :class:`WatchedDatabase` (the SQLite store's ``Database``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiohttp import web

from banyan.supervise import SideTasks

log = logging.getLogger(__name__)
PERIOD_S = 1.0


class WatchedDatabase(Protocol):
    path: Path
    failing_since: float | None  # monotonic
    writes_refused: str | None

    async def refuse_writes(self, reason: str) -> None: ...


@dataclass(frozen=True)
class FileId:
    dev: int
    ino: int

    @classmethod
    def of(cls, path: Path) -> FileId | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return cls(st.st_dev, st.st_ino)


class DatabaseWatch:
    def __init__(self, db: WatchedDatabase) -> None:
        self._db = db
        self._files: dict[Path, FileId | None] = {}
        self._lost: list[str] = []

    def record(self) -> None:
        """Remember which files the database is (call once it is open)."""
        for path in self._paths():
            self._files[path] = FileId.of(path)

    def _paths(self) -> list[Path]:
        return [self._db.path, Path(f"{self._db.path}-wal")]

    async def check(self) -> list[str]:
        """Why writes fail or cannot be trusted now; empty when none."""
        lost = self._missing_or_replaced()
        if lost and self._db.writes_refused is None:
            reason = "; ".join(lost)
            log.error(
                "%s while the server was running: refusing writes (they could not be kept); "
                "restart the server",
                reason,
            )
            await self._db.refuse_writes(
                f"the server refuses writes: {reason}; an administrator must restart it"
            )
        reasons = list(lost)
        if self._db.failing_since is not None:
            seconds = time.monotonic() - self._db.failing_since
            reasons.append(f"writes have been failing for {seconds:.0f} s")
        reasons += self._storage()
        return reasons

    def _missing_or_replaced(self) -> list[str]:
        found: list[str] = []
        for path, recorded in self._files.items():
            now = FileId.of(path)
            if recorded is None:  # not there at start (a -wal not yet made): from now on
                self._files[path] = now
            elif now is None:
                found.append(f"the database file {path} was deleted")
            elif now != recorded:
                found.append(f"the database file {path} was replaced")
        if found:
            self._lost = found
        return list(self._lost)  # once lost, lost until a restart

    def _storage(self) -> list[str]:
        directory = self._db.path.parent
        try:
            fs = os.statvfs(directory)
        except OSError as exc:
            return [f"cannot inspect {directory}: {exc.strerror}"]
        if fs.f_flag & os.ST_RDONLY:
            return [f"the file system holding {directory} is read-only"]
        if fs.f_bavail == 0:
            return [f"the disk holding {directory} is full"]
        for path in (directory, self._db.path):
            if path.exists() and not os.access(path, os.W_OK):
                return [f"{path} is not writable by the server"]
        return []

    async def run(self, period_s: float = PERIOD_S) -> None:
        """Check every ``period_s`` (a background loop)."""
        while True:
            try:
                await self.check()
            except Exception:  # one bad check must not end the watch
                log.exception("checking the database files failed")
            await asyncio.sleep(period_s)


WATCH = web.AppKey("database_watch", DatabaseWatch)


def install(app: web.Application, store: object) -> None:
    """Watch ``store``'s database for the app's lifetime, when it has one to
    watch (the SQLite store's ``db``); call after the store's ``cleanup_ctx``."""
    db = getattr(store, "db", None)
    if db is None or not hasattr(db, "refuse_writes"):
        return
    app[WATCH] = watch = DatabaseWatch(db)

    async def watching(app: web.Application) -> AsyncIterator[None]:
        watch.record()
        side = SideTasks("server")  # a failure stops the server (exit 70)
        side.spawn(watch.run(), name="database-watch")
        yield
        await side.close()

    app.cleanup_ctx.append(watching)
