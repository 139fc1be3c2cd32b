"""The loopback proxy the network-cut faults use: it relays, a silent cut holds
every byte (open connections stay open, new ones wait) until healed, a drop
resets open and new connections until healed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.faults.proxy import Proxy


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


@pytest.fixture
async def proxy(echo: int) -> AsyncIterator[Proxy]:
    the_proxy = await Proxy.start(echo)
    yield the_proxy
    await the_proxy.close()


async def connect(proxy: Proxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def roundtrip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), 10)


async def test_relays_both_ways(proxy: Proxy) -> None:
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"hello") == b"hello"
    assert proxy.connections == 1
    assert proxy.relayed_bytes == 10
    writer.close()


async def test_silent_cut_holds_the_bytes_until_healed(proxy: Proxy) -> None:
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"before") == b"before"
    proxy.cut("silent")
    writer.write(b"during")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(6), 0.5)
    # A new connection is accepted but nothing goes through it either.
    reader2, writer2 = await connect(proxy)
    writer2.write(b"new")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader2.readexactly(3), 0.3)
    assert not reader.at_eof()
    proxy.heal()
    assert await asyncio.wait_for(reader.readexactly(6), 10) == b"during"
    assert await asyncio.wait_for(reader2.readexactly(3), 10) == b"new"
    assert await roundtrip(reader, writer, b"after") == b"after"
    writer.close()
    writer2.close()


async def test_drop_resets_open_and_new_connections_until_healed(proxy: Proxy) -> None:
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"x") == b"x"
    proxy.cut("drop")
    assert await asyncio.wait_for(reader.read(10), 10) == b""  # reset
    reader2, writer2 = await connect(proxy)
    assert await asyncio.wait_for(reader2.read(10), 10) == b""  # reset at once
    proxy.heal()
    reader3, writer3 = await connect(proxy)
    assert await roundtrip(reader3, writer3, b"back") == b"back"
    for w in (writer, writer2, writer3):
        w.close()
