"""A real ``banyan-server`` process for tests and benchmarks: a free port on
127.0.0.1, its database, client file and log in the caller's directory, no
user settings file, ready once ``/health`` answers 200."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from banyan.tokens import basic_auth_header
from testbed.procs import BIN, POLL_S, Proc, clean_env, free_port, launch

SERVER = BIN / "banyan-server"


class Server:
    """One ``banyan-server`` on ``<tmp>/<name>.db`` (or on the database
    ``db_url`` names, e.g. a PostgreSQL one from ``testbed.postgres``);
    :meth:`start` it (again after a stop or a kill: same port, same database,
    same token).

    ``settings`` become ``BANYAN_<NAME>`` variables; ``env`` is added as is;
    ``command`` replaces the console script (a profiling or counting
    launcher taking the same flags); ``args`` are extra flags (TLS);
    ``scheme`` is the URL's (``https`` with TLS flags).
    """

    name = "server"

    def __init__(
        self,
        tmp: Path,
        *,
        name: str = "b",
        settings: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        command: Sequence[str] | None = None,
        args: Sequence[str] = (),
        scheme: str = "http",
        db_url: str | None = None,
    ) -> None:
        self.tmp = Path(tmp)
        self.db_url = db_url
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.db = self.tmp / f"{name}.db"
        self.client_file = self.tmp / f"{name}-client.json"
        self.log = self.tmp / f"{name}-server.log"
        self.config = self.tmp / "empty-config.toml"  # so no user settings file is read
        self.settings: dict[str, object] = dict(settings or {})
        self.env = dict(env or {})
        self.command = list(command) if command is not None else [str(SERVER)]
        self.args = list(args)
        self.proc: Proc | None = None
        self._token: str | None = None

    def standby(self, *, name: str) -> Server:
        """Another server on this one's database, client file and settings, at
        a port of its own (logged as ``<name>-server.log``): a standby to
        :meth:`start` once this one is gone (SQLite), or beside it (a shared
        store). The client file keeps the admin token, so ``token`` works on both."""
        other = Server(
            self.tmp,
            name=name,
            settings=self.settings,
            env=self.env,
            command=self.command,
            args=self.args,
            scheme=self.url.partition("://")[0],
        )
        other.db = self.db
        other.client_file = self.client_file
        return other

    # --- the process ------------------------------------------------------------

    def start(self, *, timeout_s: float = 30) -> None:
        """Launch it and wait until it answers (RuntimeError with its log if it
        exits or stays silent for ``timeout_s``)."""
        self.config.touch()
        self._token = None
        env = clean_env(BANYAN_CONFIG=str(self.config), BANYAN_CLIENT_FILE=str(self.client_file))
        env.update({f"BANYAN_{k.upper()}": str(v) for k, v in self.settings.items()})
        env.update(self.env)
        argv = [*self.command, "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--db", self.location, *self.args]
        self.proc = launch(argv, log=self.log, env=env, cwd=self.tmp, name=self.name)
        deadline = time.monotonic() + timeout_s
        while not self._answers():
            if self.proc.popen.poll() is not None:
                raise RuntimeError(
                    f"banyan-server exited with {self.proc.popen.returncode}:\n{self.log_text()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"banyan-server silent for {timeout_s} s:\n{self.log_text()}")
            time.sleep(POLL_S)

    @property
    def location(self) -> str:
        """What ``--db`` says: ``db_url``, else the SQLite file."""
        return self.db_url if self.db_url is not None else str(self.db)

    def _answers(self) -> bool:
        if not self.client_file.exists():
            return False
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise RuntimeError("the server was not started")
        return self.proc.popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_text(self, tail: int = 4000) -> str:
        return self.proc.log_text(tail) if self.proc is not None else ""

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process, all its threads."""
        assert self.proc is not None
        return self.proc.cpu_seconds()

    def signal(self, sig: int) -> int:
        """Send ``sig`` and wait for the exit code."""
        self.popen.send_signal(sig)
        return self.popen.wait(timeout=20)

    def kill(self) -> None:
        """``kill -9``: no shutdown at all."""
        self.signal(signal.SIGKILL)

    def stop(self, *, grace_s: float = 10) -> int | None:
        """SIGTERM, then SIGKILL after ``grace_s``; the exit code (None if never started)."""
        return None if self.proc is None else self.proc.stop(grace_s=grace_s)

    # --- talking to it ------------------------------------------------------------

    def create_token(self, role: str, name: str) -> str:
        """``banyan-server token create`` on this server's database (the real
        command, a subprocess); returns the token, printed on its last line."""
        done = subprocess.run(
            [str(SERVER), "token", "create", "--role", role, "--name", name, "--db", self.location],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(BANYAN_CONFIG=str(self.config)),
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"token create failed ({done.returncode}): {done.stderr}")
        return done.stdout.rstrip("\n").splitlines()[-1]

    @property
    def token(self) -> str:
        """The local admin token from the client file the server wrote."""
        if self._token is None:  # read once: the benchmarks ask on every request
            self._token = str(json.loads(self.client_file.read_text())["token"])
        return self._token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": basic_auth_header(self.token), "Content-Type": "application/json"}
