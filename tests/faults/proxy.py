"""A loopback TCP proxy that can cut the network and heal it.

``Proxy`` listens on a free 127.0.0.1 port and relays every connection to an
upstream port. :meth:`Proxy.cut` models a partition in one of two ways:

- ``"silent"``: packets are dropped, connections stay open. Nothing is
  relayed in either direction (each direction holds what it read and stops
  reading, so the sender's buffers fill up, as behind a black hole); new
  connections are accepted but not relayed. :meth:`Proxy.heal` lets the held
  bytes through and relaying goes on, as when a route comes back.
- ``"drop"``: every open connection is reset and new ones are reset at once,
  until :meth:`Proxy.heal`.

Everything runs on the caller's event loop; ``close()`` ends every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Literal

Mode = Literal["silent", "drop"]
CHUNK = 65536


class Proxy:
    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.mode: Mode | None = None
        self.connections = 0  # accepted so far
        self.relayed_bytes = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(cls, upstream_port: int, *, port: int = 0) -> Proxy:
        proxy = cls(upstream_port)
        proxy._server = await asyncio.start_server(proxy._accept, "127.0.0.1", port)
        sock: socket.socket = proxy._server.sockets[0]
        proxy.port = int(sock.getsockname()[1])
        return proxy

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def retarget(self, upstream_port: int) -> None:
        """Relay new connections to another port (a restarted server)."""
        self.upstream = (self.upstream[0], upstream_port)

    def cut(self, mode: Mode = "silent") -> None:
        self.mode = mode
        self._flowing.clear()
        if mode == "drop":
            for writer in list(self._writers):
                _reset(writer)

    def heal(self) -> None:
        self.mode = None
        self._flowing.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            _reset(writer)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    # --- relaying ---------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            if self.mode == "drop":
                _reset(writer)
                return
            await self._flowing.wait()  # a silent cut holds a new connection here
            try:
                up_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                _reset(writer)
                return
            self._writers.add(upstream_writer)
            await asyncio.gather(self._pump(reader, upstream_writer), self._pump(up_reader, writer))
        except (asyncio.CancelledError, ConnectionError, OSError):
            pass
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    self._writers.discard(w)
                    _reset(w)
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                await self._flowing.wait()  # silent: hold this chunk, read no more
                if writer.is_closing():
                    break
                writer.write(data)
                self.relayed_bytes += len(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side ended: end the other, so both peers see the close.
            _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.transport.abort()
