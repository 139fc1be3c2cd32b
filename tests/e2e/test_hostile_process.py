"""Hostile clients against a real ``banyan-server`` process: a thousand idle
websockets, clients that trickle their headers, a body far over the limit.
The server's memory is measured with psutil and printed; the only bound on it
is a very generous sanity one. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from banyan.tokens import basic_auth_header
from testbed import Cluster

pytestmark = pytest.mark.slow
SOCKETS = 1000
MiB = 1024 * 1024


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path)
    yield the_cluster
    the_cluster.close()
    if the_cluster.server is not None:
        print(f"----- server -----\n{the_cluster.server.log_text()}")


def rss(cluster: Cluster) -> int:
    assert cluster.server is not None
    return int(psutil.Process(cluster.server.pid).memory_info().rss)


async def served(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> float:
    """Seconds for a read and a write by another client; asserts both succeed."""
    started = time.monotonic()
    async with session.get(url + "/tasks", headers=headers) as resp:
        assert resp.status == 200
    async with session.post(url + "/tasks", json={"command": "true"}, headers=headers) as resp:
        assert resp.status == 201
    return time.monotonic() - started


async def open_many(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], count: int
) -> list[aiohttp.ClientWebSocketResponse]:
    gate = asyncio.Semaphore(50)

    async def one() -> aiohttp.ClientWebSocketResponse:
        async with gate:
            return await session.ws_connect(url, headers=headers, autoping=True)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def pour(writer: asyncio.StreamWriter, chunk: bytes, times: int) -> None:
    with contextlib.suppress(ConnectionError):
        for _ in range(times):
            writer.write(chunk)
            await writer.drain()


def test_a_thousand_idle_websockets(cluster: Cluster) -> None:
    cluster.start_server(hello_timeout_s=3)
    asyncio.run(_idle_websockets(cluster))


async def _idle_websockets(cluster: Cluster) -> None:
    url = cluster.url
    admin = {"Authorization": basic_auth_header(cluster.token)}
    figures: dict[str, Any] = {}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(url + "/workers", json={"name": "w"}, headers=admin) as resp:
            assert resp.status == 201, await resp.text()
            worker = {"Authorization": basic_auth_header((await resp.json())["token"])}
        figures["idle_s"] = await served(session, url, admin)
        base = figures["rss_base_mib"] = rss(cluster) / MiB

        # 1,000 upgrade attempts without a token: 401 each, nothing held.
        ws_url = url.replace("http", "ws", 1)

        async def unauthenticated() -> int:
            try:
                await session.ws_connect(ws_url + "/events")
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status
            return 101

        statuses = await asyncio.gather(*(unauthenticated() for _ in range(SOCKETS)))
        assert set(statuses) == {401}, set(statuses)
        figures["rss_after_1000_unauthenticated_mib"] = rss(cluster) / MiB

        # 1,000 event feed subscribers that only listen.
        started = time.monotonic()
        feeds = await open_many(session, ws_url + "/events", admin, SOCKETS)
        figures["open_1000_feed_s"] = time.monotonic() - started
        for ws in feeds[:10]:
            hello = json.loads((await asyncio.wait_for(ws.receive(), 30)).data)
            assert hello["type"] == "feed.hello"
        figures["rss_1000_feed_mib"] = rss(cluster) / MiB
        figures["served_with_1000_feed_s"] = await served(session, url, admin)

        # 1,000 gateway sockets that never say hello: dropped after hello_timeout_s.
        started = time.monotonic()
        gateways = await open_many(session, ws_url + "/workers/connect", worker, SOCKETS)
        figures["rss_1000_feed_1000_gateway_mib"] = rss(cluster) / MiB
        figures["served_with_2000_sockets_s"] = await served(session, url, admin)

        async def dropped(ws: aiohttp.ClientWebSocketResponse) -> int | None:
            await asyncio.wait_for(ws.receive(), timeout=60)
            return ws.close_code

        codes = await asyncio.gather(*(dropped(ws) for ws in gateways))
        figures["gateway_dropped_after_s"] = time.monotonic() - started
        assert set(codes) == {4400}, set(codes)
        # The feed subscribers are still there and still get events.
        async with session.post(url + "/tasks", json={"command": "true"}, headers=admin) as resp:
            assert resp.status == 201
            created = (await resp.json())["_id"]
        for ws in feeds[:20]:
            event = json.loads((await asyncio.wait_for(ws.receive(), 30)).data)
            while event.get("data", {}).get("_id") != created:  # after feed.hello, if unread
                event = json.loads((await asyncio.wait_for(ws.receive(), 30)).data)
        figures["rss_after_gateway_drop_mib"] = rss(cluster) / MiB
        await asyncio.gather(*(ws.close() for ws in feeds))
    feed_growth = figures["rss_1000_feed_mib"] - figures["rss_after_1000_unauthenticated_mib"]
    figures["rss_per_idle_feed_socket_kib"] = feed_growth * 1024 / SOCKETS
    gateway_growth = figures["rss_1000_feed_1000_gateway_mib"] - figures["rss_1000_feed_mib"]
    figures["rss_per_hello_less_gateway_socket_kib"] = gateway_growth * 1024 / SOCKETS
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}, indent=1))
    # A very generous sanity bound only: 2,000 idle sockets in under 1 GiB.
    assert figures["rss_1000_feed_1000_gateway_mib"] - base < 1024, figures


def test_clients_trickling_headers_are_dropped_and_others_served(cluster: Cluster) -> None:
    cluster.start_server(keepalive_timeout_s=2)
    asyncio.run(_slowloris(cluster, connections=50))


async def _slowloris(cluster: Cluster, connections: int) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"s" * 500

    async def slow_client() -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", cluster.port)
        started = time.monotonic()
        try:
            for byte in head:  # one byte a second would take 8 minutes; 0.1 s: ~1 min
                writer.write(bytes([byte]))
                await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(1024), timeout=0.1) == b"":
                        break  # the server closed it
                except TimeoutError:
                    continue
        except ConnectionError:
            pass
        finally:
            await close(writer)
        return time.monotonic() - started

    admin = {"Authorization": basic_auth_header(cluster.token)}
    async with aiohttp.ClientSession() as session:
        slow = [asyncio.create_task(slow_client()) for _ in range(connections)]
        await asyncio.sleep(0.5)
        latency = [await served(session, cluster.url, admin) for _ in range(5)]
        held = await asyncio.wait_for(asyncio.gather(*slow), timeout=120)
    print(
        f"{connections} slow-header clients dropped after {min(held):.2f}-{max(held):.2f} s "
        f"(keepalive_timeout_s = 2); others served in {max(latency) * 1000:.1f} ms at most"
    )
    assert max(held) < 30, held  # dropped, not held until they finish (~1 min)


def test_a_body_far_over_the_limit_is_413_without_buffering_it(cluster: Cluster) -> None:
    cluster.start_server(max_body_bytes=8 * MiB)
    asyncio.run(_huge_body(cluster))


async def _huge_body(cluster: Cluster) -> None:
    auth = basic_auth_header(cluster.token)
    before = rss(cluster)
    for framing in ("content-length", "chunked"):
        reader, writer = await asyncio.open_connection("127.0.0.1", cluster.port)
        length = 1024 * MiB
        header = f"Content-Length: {length}" if framing == "content-length" else ""
        if framing == "chunked":
            header = "Transfer-Encoding: chunked"
        writer.write(
            f"POST /tasks HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
            f"Content-Type: application/json\r\n{header}\r\n\r\n".encode()
        )
        chunk = b"[" + b" " * (MiB - 1)

        if framing == "chunked":
            chunk = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        pouring = asyncio.create_task(pour(writer, chunk, length // MiB))
        try:
            status_line = await asyncio.wait_for(reader.readline(), timeout=60)
            rest = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
        finally:
            pouring.cancel()
            await close(writer)
        peak = rss(cluster)
        print(
            f"{framing}: {status_line.decode().strip()}; server RSS {before / MiB:.1f} → "
            f"{peak / MiB:.1f} MiB"
        )
        assert status_line.split()[1] == b"413", (status_line, rest)
        assert peak - before < 512 * MiB  # sanity: nowhere near the gigabyte poured
