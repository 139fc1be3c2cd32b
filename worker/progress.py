"""Progress from inside a task: the worker listens on a private unix socket
and tells each task where it is (``BANYAN_PROGRESS_SOCKET``); ``banyan
progress 40 "loading"`` writes one JSON line there, and the worker forwards it
to the server as a ``progress`` frame."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from banyan.constants import PROGRESS_SOCKET_ENV

log = logging.getLogger(__name__)
ENV_SOCKET = PROGRESS_SOCKET_ENV
MAX_LINE_BYTES = 4096

Report = Callable[[str, float | None, str | None], None]


class ProgressListener:
    def __init__(self, report: Report) -> None:
        self._report = report
        self._dir = Path(tempfile.mkdtemp(prefix="banyan-worker-"))
        self.path = self._dir / "progress.sock"
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._client, path=str(self.path))
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(OSError):
            self.path.unlink()
            self._dir.rmdir()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=5)
            data = json.loads(line[:MAX_LINE_BYTES])
            percent = data.get("percent")
            message = data.get("message")
            self._report(
                str(data["task"]),
                None if percent is None else max(0.0, min(100.0, float(percent))),
                None if message is None else str(message)[:1024],
            )
            writer.write(b"ok\n")
        except (ValueError, KeyError, TypeError, TimeoutError, OSError) as exc:
            log.debug("bad progress report: %s", exc)
            with contextlib.suppress(OSError):
                writer.write(b"error\n")
        finally:
            with contextlib.suppress(OSError):
                await writer.drain()
                writer.close()
