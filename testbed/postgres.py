"""A throwaway PostgreSQL cluster for the tests and the benchmarks: ``initdb``
in a fresh temporary directory, ``postgres`` on a free port of 127.0.0.1 (its
unix socket in that directory too, nothing else listens), fresh databases on
demand, and a fast shutdown by PID that removes the directory.

``initdb`` refuses to run as root: as root, both run as the ``postgres``
system user (the Debian package creates it) and the directory is given to
it; otherwise they run as the current user. The binaries are looked up on
``PATH``, then in ``/usr/lib/postgresql/15/bin``; when they are missing,
:class:`PostgresMissing` says in one line how to install them (the tests
turn it into a failure, never a skip).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from testbed.procs import free_port

DEBIAN_BIN = Path("/usr/lib/postgresql/15/bin")
INSTALL_HINT = "apt-get install postgresql-15"
SUPERUSER = "banyan"  # the cluster's superuser (trust auth, loopback only)
# For the test suite: durability off (a crash loses a throwaway cluster anyway).
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresMissing(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def find_binary(name: str) -> str:
    """The path of a PostgreSQL server binary (``initdb``, ``postgres``)."""
    found = shutil.which(name)
    if found is None and (DEBIAN_BIN / name).is_file():
        found = str(DEBIAN_BIN / name)
    if found is None:
        raise PostgresMissing(
            f"PostgreSQL server binary {name!r} not found on PATH or in {DEBIAN_BIN}: "
            f"install it with `{INSTALL_HINT}`"
        )
    return found


class Postgres:
    """One cluster; :meth:`start` it, :meth:`new_database` per test, :meth:`stop`.

    ``settings`` are ``postgres -c`` options (``FAST_SETTINGS`` for tests;
    the benchmarks pass none, so commits are durable as in production)."""

    def __init__(self, *, settings: dict[str, str] | None = None) -> None:
        self.settings = dict(settings or {})
        self.port = 0
        self.dir: Path | None = None
        self.popen: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        self._user: str | None = "postgres" if os.geteuid() == 0 else None

    # --- lifetime --------------------------------------------------------------------

    def start(self, *, timeout_s: float = 60) -> None:
        initdb, postgres = find_binary("initdb"), find_binary("postgres")
        # Not under pytest's tmp_path: that is private to root, and the
        # ``postgres`` user must be able to reach its own directory.
        self.dir = Path(tempfile.mkdtemp(prefix="banyan-pg-"))
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        data = self.dir / "data"
        self._run([initdb, "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                   "--no-sync", "--locale=C"])  # fmt: skip
        self.port = free_port()
        argv = [postgres, "-D", str(data), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
                "-c", "max_connections=200"]  # fmt: skip
        for key, value in self.settings.items():
            argv += ["-c", f"{key}={value}"]
        log = open(self.dir / "postgres.log", "wb")  # noqa: SIM115 (the process keeps it)
        self.popen = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, user=self._user, cwd=self.dir,
            env=self._env(), start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout_s
        while not self._ready():
            if self.popen.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.popen.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"postgres not ready after {timeout_s} s")
            time.sleep(0.05)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        if self._user is not None:
            env["HOME"] = str(self.dir)
        return env

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(
            argv, capture_output=True, user=self._user, cwd=self.dir, env=self._env(),
            timeout=120, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.decode()}")

    def _ready(self) -> bool:
        # The postmaster writes "ready" as the 8th line of its pid file once it accepts.
        assert self.dir is not None
        with contextlib.suppress(OSError):
            lines = (self.dir / "data" / "postmaster.pid").read_text().splitlines()
            return len(lines) >= 8 and lines[7].strip() == "ready"
        return False

    def log(self, tail: int = 4000) -> str:
        if self.dir is None:
            return ""
        with contextlib.suppress(OSError):
            return (self.dir / "postgres.log").read_text(errors="replace")[-tail:]
        return ""

    def stop(self, *, timeout_s: float = 30) -> None:
        """Fast shutdown (SIGINT to the postmaster's PID: sessions are ended,
        a checkpoint is written), SIGKILL if it outlasts ``timeout_s``; then
        the directory goes."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        self.popen = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> Postgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- databases -------------------------------------------------------------------

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    async def new_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        import asyncpg  # imported here: only PostgreSQL runs need the driver

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        conn = await asyncpg.connect(self.url("postgres"))
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        finally:
            await conn.close()
        return self.url(name)

    def new_database_sync(self, prefix: str = "t") -> str:
        """:meth:`new_database` outside an event loop (benchmarks, process tests)."""
        return asyncio.run(self.new_database(prefix))
