"""A server process and the workers started against it, for tests (fast
liveness settings, killed at the end) and benchmarks (default settings,
SIGTERM so the workers leave cleanly and profilers write their files)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from testbed.http import Http
from testbed.procs import BIN, Proc, clean_env, launch, stop_all, wait_for
from testbed.server import Server

WORKER = BIN / "banyan-worker"

# Fast liveness for tests; the worker learns heartbeat and server timeout from
# the server's welcome frame.
FAST: Mapping[str, object] = {
    "worker_timeout_s": 3,
    "heartbeat_interval_s": 0.5,
    "server_timeout_s": 5,
}


class Cluster:
    """One server (fresh database in ``tmp``) and the workers started against
    it; :meth:`close` (or leaving the ``with`` block) ends them all.

    ``settings`` are the server's base settings (``FAST`` by default; a
    benchmark passes ``{}``); :meth:`start_server` adds to them. The other
    keywords go to :class:`Server`, or ``server`` is one built by the caller
    (a benchmark's, with its own readings).
    """

    def __init__(
        self,
        tmp: Path,
        *,
        name: str = "b",
        settings: Mapping[str, object] = FAST,
        server_command: Sequence[str] | None = None,
        server_args: Sequence[str] = (),
        server_env: Mapping[str, str] | None = None,
        scheme: str = "http",
        server: Server | None = None,
    ) -> None:
        self.tmp = Path(tmp)
        self.name = name
        self.server = server or Server(
            self.tmp,
            name=name,
            settings=settings,
            env=server_env,
            command=server_command,
            args=server_args,
            scheme=scheme,
        )
        self.workers: dict[str, Proc] = {}
        self._http: Http | None = None

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- the server -------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.server.url

    @url.setter
    def url(self, value: str) -> None:
        self.server.url = value

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def db(self) -> Path:
        return self.server.db

    @db.setter
    def db(self, path: Path) -> None:  # a test may put the database elsewhere before starting
        self.server.db = path

    @property
    def client_file(self) -> Path:
        return self.server.client_file

    def start_server(self, **settings: object) -> None:
        self.server.settings.update(settings)
        self.server.start()

    def kill_server(self) -> None:
        self.server.kill()

    def restart_server(self) -> None:
        self.server.start()

    @property
    def token(self) -> str:
        return self.server.token

    @property
    def http(self) -> Http:
        if self._http is None:
            self._http = Http(self.url, self.token)
        return self._http

    # --- workers ----------------------------------------------------------------

    def start_worker(
        self,
        name: str,
        *args: str,
        cores: float = 2,
        memory: str | None = "4 GiB",
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Proc:
        """``banyan-worker --name NAME --cores CORES [--memory MEMORY] ARGS``,
        finding the server through its client file; ``memory=None`` lets the
        worker measure the machine, ``command`` replaces the console script."""
        argv = [*(command or [str(WORKER)]), "--name", name, "--cores", str(cores)]
        if memory is not None:
            argv += ["--memory", memory]
        full_env = clean_env(
            BANYAN_CLIENT_FILE=str(self.client_file), BANYAN_CONFIG=str(self.server.config)
        )
        full_env.update(env or {})
        log = self.tmp / f"{self.name}-worker-{name}.log"
        proc = launch([*argv, *args], log=log, env=full_env, cwd=self.tmp, name=name)
        self.workers[name] = proc
        return proc

    def wait_connected(
        self,
        *names: str,
        timeout: float = 15,
        states: Sequence[str] = ("idle", "busy", "draining"),
    ) -> None:
        """Until every named worker is connected (in one of ``states``)."""

        def check() -> bool:
            for name in names:
                proc = self.workers[name]
                assert proc.popen.poll() is None, f"worker {name} exited: {proc.log_text()}"
            found = self.http.workers()
            return all(n in found and found[n]["state"] in states for n in names)

        wait_for(check, timeout, f"workers {names} to connect")
        for name in names:
            self.workers[name].remember_descendants()

    # --- the end ----------------------------------------------------------------

    def close(self, *, grace_s: float = 0) -> None:
        """End the workers, then the server (SIGKILL at once by default; with
        ``grace_s``, SIGTERM first), then whatever they left behind."""
        server = [self.server.proc] if self.server.proc is not None else []
        if grace_s > 0:  # the workers leave while the server still listens
            stop_all(list(self.workers.values()), grace_s=grace_s)
            stop_all(server, grace_s=grace_s)
        else:
            stop_all([*self.workers.values(), *server], grace_s=0)
