"""One server per SQLite file: ``banyan-server`` holds an ``flock`` on
``<db>-server.lock`` while it serves.

Two servers on one SQLite file would each think the workers connected to
the other one silent and declare them lost, and their tasks would run
twice. A standby started on a dead server's file (failover) is fine: the
kernel drops the lock when its holder dies, even by ``kill -9``. The lock is
a file of its own, not the database: SQLite's POSIX locks on the database
must not meet an ``flock`` (on NFS they are the same kind of lock). The
``token`` commands do not take it: they may run beside the server.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from banyan.errors import Conflict


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + "-server.lock")


@contextlib.contextmanager
def serving(db: Path, *, url: str) -> Iterator[None]:
    """Hold the serving lock of ``db`` for the block; ``Conflict`` naming the
    holder when another server has it."""
    path = lock_path(db)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # as the store does
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:  # the store cannot open the database either: it says why
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "unknown"
            raise Conflict(
                f"another banyan-server ({holder}) serves {db}: a SQLite database is "
                "served by one server at a time (several servers need PostgreSQL)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, {url}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
