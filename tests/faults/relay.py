"""A loopback relay to a test server that ``kill -9``s it at the worst moment
for a client: as an answer starts to arrive, i.e. after the server committed
what the request asked for (a server answers after its commit) and before
the client has seen a byte of the answer.

:meth:`KillRelay.arm` picks the next answer: the relay kills the server,
resets that client's connection instead of relaying, and restarts the server
on the same database and port in a thread (:meth:`KillRelay.wait_restarted`
gives the seconds from the kill until it serves). While the server is down,
new connections are reset, as a refused connection would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from testbed import Cluster

CHUNK = 65536


class KillRelay:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.port = 0
        self.kills = 0
        self._armed = False
        self._restarted: asyncio.Future[float] | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # pumps and restarts
        self._handlers: set[asyncio.Task[None]] = set()  # one per client connection
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arm(self) -> None:
        """Kill the server as the next answer starts to arrive."""
        self._armed = True
        self._restarted = asyncio.get_running_loop().create_future()

    async def wait_restarted(self) -> float:
        """After :meth:`arm`: seconds from the kill until the server served again."""
        assert self._restarted is not None, "arm() first"
        return await self._restarted

    async def close(self) -> None:
        if self._restarted is not None and not self._restarted.done():
            await asyncio.wait([self._restarted])  # never leave a restart half done
        if self._server is not None:
            self._server.close()
        # Connection handlers end by themselves once their sockets are gone
        # (asyncio logs a cancelled one as an error).
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        if handler is not None:  # close() waits for the relays still open (keep-alive)
            self._handlers.add(handler)
            handler.add_done_callback(self._handlers.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.cluster.port)
        except OSError:  # the server is down: the client sees a reset and retries
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        upward = asyncio.create_task(_pump(reader, up_writer))
        self._tasks.add(upward)
        upward.add_done_callback(self._tasks.discard)
        try:
            while chunk := await up_reader.read(CHUNK):
                if self._armed:
                    self._kill(writer)
                    return
                writer.write(chunk)
                await writer.drain()
        except OSError:
            pass
        finally:
            upward.cancel()
            up_writer.close()
            writer.close()
            self._writers.difference_update((writer, up_writer))

    def _kill(self, writer: asyncio.StreamWriter) -> None:
        self._armed = False
        self.cluster.kill_server()  # committed, and its answer is lost with it
        self.kills += 1
        killed = time.monotonic()
        writer.transport.abort()
        restarted = self._restarted
        assert restarted is not None

        async def restart() -> None:
            try:
                await asyncio.to_thread(self.cluster.restart_server)
            except BaseException as exc:
                restarted.set_exception(exc)
                raise
            restarted.set_result(time.monotonic() - killed)

        task = asyncio.create_task(restart())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
