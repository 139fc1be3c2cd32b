"""Hostile input against an in-process server (real aiohttp server on a
loopback port, real SQLite file): huge and endless bodies, absurd nesting,
thousands of query terms, oversized request lines and headers, clients that
trickle their headers or body, websockets that never say hello.

Raw sockets are used where an HTTP client would be too polite (it would send
the whole body, or refuse to send a malformed header). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from banyan import protocol as p
from banyan.tokens import Role, basic_auth_header
from server.app import HTTP_LIMITS, create_app
from server.feed import SUBSCRIBER_MAX_FRAME_BYTES
from server.keys import STORE
from server.settings import Settings
from tests.conftest import Api, Response

MakeApi = Callable[..., Awaitable[Api]]
MAX_TERMS = 200  # banyan.query.parse_where's default, named in the README's Errors section
MAX_LIST = 1000


@pytest.fixture
async def make_api(
    aiohttp_client: Callable[..., Awaitable[TestClient]], settings: Settings, tmp_path: Path
) -> AsyncIterator[MakeApi]:
    """A server with some settings changed (its own database file)."""
    count = 0

    async def make(**overrides: Any) -> Api:
        nonlocal count
        count += 1
        custom = settings.model_copy(update={"db": tmp_path / f"h{count}.db", **overrides})
        app = create_app(custom)
        client = await aiohttp_client(app)
        store = app[STORE]
        tokens = {
            "admin": await store.create_token("admin", Role.ADMIN),
            "worker": await store.create_token("worker-1", Role.WORKER),
        }
        return Api(client, tokens)

    yield make


def assert_eve(resp: Response, status: int) -> str:
    assert resp.status == status, resp
    assert isinstance(resp.body, dict) and resp.body.get("_status") == "ERR", resp
    assert resp.body["_error"]["code"] == status, resp
    message = resp.body["_error"]["message"]
    assert isinstance(message, str) and message and "Traceback" not in message, resp
    return message


async def total(api: Api) -> int:
    resp = await api.get("/tasks", params={"max_results": "1"})
    assert resp.status == 200, resp
    return int(resp.body["_meta"]["total"])


# --- raw HTTP over a socket -------------------------------------------------------------


class Raw:
    """One TCP connection to the test server, written to by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, api: Api) -> Raw:
        server = api.client.server
        reader, writer = await asyncio.open_connection(server.host, server.port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, timeout: float = 20) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body of the next response (Content-Length framed)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        return status, headers, body

    async def closed_by_server(self, timeout: float) -> bool:
        """True once the server closes the connection (EOF or reset) within ``timeout``."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), timeout):
                pass
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return True

    def close(self) -> None:
        self.writer.close()


def request_head(api: Api, method: str, path: str, headers: dict[str, str]) -> bytes:
    auth = basic_auth_header(api.tokens["admin"])
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: {auth}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# --- bodies ------------------------------------------------------------------------------


async def test_a_content_length_over_the_limit_is_413_before_the_body_is_sent(
    make_api: MakeApi,
) -> None:
    api = await make_api(max_body_bytes=4096)
    raw = await Raw.open(api)
    try:
        # Announce a gigabyte, send 10 bytes: the answer must not wait for the rest.
        head = request_head(
            api, "POST", "/tasks", {"Content-Type": "application/json", "Content-Length": "1e9"}
        )
        await raw.send(head.replace(b"1e9", str(10**9).encode()) + b'[{"comman')
        status, headers, body = await raw.response()
    finally:
        raw.close()
    assert status == 413, body
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)
    assert error["_status"] == "ERR" and error["_error"]["code"] == 413, error
    assert "4096" in error["_error"]["message"], error
    assert await total(api) == 0


async def test_a_streamed_body_over_the_limit_is_413_naming_the_limit(make_api: MakeApi) -> None:
    api = await make_api(max_body_bytes=4096)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'[{"command": "x", "name": "'
        for _ in range(100):
            yield b"n" * 1000
        yield b'"}]'

    resp = await api.request("POST", "/tasks", raw=chunks())  # type: ignore[arg-type]
    assert "4096" in assert_eve(resp, 413)
    assert await total(api) == 0


async def test_a_body_that_trickles_in_is_408_after_body_timeout_s(make_api: MakeApi) -> None:
    api = await make_api(body_timeout_s=0.5)
    raw = await Raw.open(api)
    started = time.monotonic()
    try:
        head = request_head(
            api, "POST", "/tasks", {"Content-Type": "application/json", "Content-Length": "1000"}
        )
        await raw.send(head + b"[")

        async def trickle() -> None:
            for _ in range(40):  # 20 s at most, far past the timeout
                await asyncio.sleep(0.5)
                await raw.send(b" ")

        dripping = asyncio.create_task(trickle())
        try:
            status, _, body = await raw.response(timeout=20)
        finally:
            dripping.cancel()
    finally:
        raw.close()
    print(f"408 after {time.monotonic() - started:.2f} s")
    assert status == 408, body
    error = json.loads(body)
    assert error["_error"]["code"] == 408 and "0.5 s" in error["_error"]["message"], error
    assert await total(api) == 0


DEEP = 100_000


@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [
        pytest.param("POST", "/tasks", "[" * DEEP + "]" * DEEP, id="lists"),
        pytest.param("POST", "/tasks", '{"a": ' * DEEP + "1" + "}" * DEEP, id="objects"),
        pytest.param("POST", "/tasks", "[" * DEEP, id="unclosed"),
        pytest.param(
            "POST", "/tasks", '{"command": "x", "env": ' + "[{" * DEEP + "}]" * DEEP + "}",
            id="mixed-in-a-field",
        ),
        pytest.param("PATCH", "/tasks", "[" * DEEP + "]" * DEEP, id="bulk-patch"),
        pytest.param("POST", "/memory_usage", "[" * DEEP + "]" * DEEP, id="memory-usage"),
    ],
)  # fmt: skip
async def test_json_nested_100000_deep_is_a_client_error(
    api: Api, method: str, path: str, raw: str
) -> None:
    resp = await api.request(method, path, raw=raw)
    assert resp.status in (400, 422), resp
    assert_eve(resp, resp.status)
    assert await total(api) == 0


# --- queries -----------------------------------------------------------------------------


def or_of(count: int) -> str:
    return json.dumps({"$or": [{"priority": i} for i in range(count)]}, separators=(",", ":"))


async def test_where_with_more_terms_than_the_limit_is_400_naming_it(api: Api) -> None:
    message = assert_eve(await api.get("/tasks", params={"where": or_of(MAX_TERMS + 1)}), 400)
    assert str(MAX_TERMS) in message, message


async def test_where_at_the_term_limit_is_served(api: Api) -> None:
    await api.submit(command="true", priority=7)
    resp = await api.get("/tasks", params={"where": or_of(MAX_TERMS)})
    assert resp.status == 200, resp
    assert resp.body["_meta"]["total"] == 1


async def test_an_in_list_over_the_limit_is_400_and_at_the_limit_served(api: Api) -> None:
    def in_list(count: int) -> str:
        return json.dumps({"priority": {"$in": list(range(count))}}, separators=(",", ":"))

    message = assert_eve(await api.get("/tasks", params={"where": in_list(MAX_LIST + 1)}), 400)
    assert str(MAX_LIST) in message, message
    assert (await api.get("/tasks", params={"where": in_list(MAX_LIST)})).status == 200


async def test_thousands_of_terms_are_refused_by_the_request_line_limit(api: Api) -> None:
    # 5,000 terms cannot fit in a request line (HTTP_LIMITS): aiohttp's 400, at once.
    where = or_of(5000)
    assert len(where) > HTTP_LIMITS["max_line_size"]
    started = time.monotonic()
    resp = await api.get("/tasks", params={"where": where})
    assert resp.status == 400, resp
    assert "Traceback" not in json.dumps(resp.body)
    print(f"5,000-term where refused in {time.monotonic() - started:.3f} s")


async def test_the_feed_refuses_an_oversized_where_before_upgrading(api: Api) -> None:
    resp = await api.get("/events", params={"where": or_of(MAX_TERMS + 1)})
    assert str(MAX_TERMS) in assert_eve(resp, 400)


# --- request lines and headers --------------------------------------------------------


async def test_a_header_over_the_field_limit_is_400_and_the_server_goes_on(api: Api) -> None:
    resp = await api.get("/health", headers={"X-Junk": "j" * (HTTP_LIMITS["max_field_size"] + 1)})
    assert resp.status == 400, resp
    assert (await api.get("/health")).status == 200


async def test_too_many_headers_is_400(api: Api) -> None:
    headers = {f"X-H{i}": "v" for i in range(HTTP_LIMITS["max_headers"] + 10)}
    resp = await api.get("/health", headers=headers)
    assert resp.status in (400, 431), resp
    assert (await api.get("/health")).status == 200


async def test_a_huge_token_is_401_not_a_crash(api: Api) -> None:
    resp = await api.get("/tasks", as_=None, headers={"Authorization": "Bearer " + "t" * 8000})
    assert_eve(resp, 401)


# --- slow clients ----------------------------------------------------------------------


async def test_headers_sent_a_byte_at_a_time_are_cut_off_after_keepalive_timeout_s(
    make_api: MakeApi,
) -> None:
    api = await make_api(keepalive_timeout_s=1.0)
    slow = await Raw.open(api)
    head = request_head(api, "GET", "/health", {"X-Slow": "s" * 200})
    started = time.monotonic()

    async def trickle() -> None:
        for byte in head[:-4]:  # never finishes the request (about 40 s at this pace)
            await slow.send(bytes([byte]))
            await asyncio.sleep(0.2)

    dripping = asyncio.create_task(trickle())
    try:
        # Others are served meanwhile.
        for _ in range(5):
            assert (await api.get("/health")).status == 200
        assert await slow.closed_by_server(timeout=15), "the slow connection was never closed"
    finally:
        dripping.cancel()
        slow.close()
    held = time.monotonic() - started
    print(f"slow-header connection closed after {held:.2f} s (keepalive_timeout_s = 1.0)")
    assert (await api.get("/health")).status == 200


async def test_an_idle_connection_is_closed_after_keepalive_timeout_s(make_api: MakeApi) -> None:
    api = await make_api(keepalive_timeout_s=0.5)
    raw = await Raw.open(api)
    try:
        await raw.send(request_head(api, "GET", "/health", {}))
        status, _, _ = await raw.response()
        assert status == 200
        assert await raw.closed_by_server(timeout=10)
    finally:
        raw.close()


# --- websockets ------------------------------------------------------------------------


async def test_an_unauthenticated_upgrade_is_refused_before_it_becomes_a_socket(
    api: Api,
) -> None:
    for path in ("/events", "/workers/connect"):
        headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}
        headers["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
        resp = await api.get(path, as_=None, headers=headers)
        assert_eve(resp, 401)


async def test_a_gateway_socket_without_hello_is_closed_after_hello_timeout_s(
    make_api: MakeApi,
) -> None:
    api = await make_api(hello_timeout_s=0.5)
    headers = {"Authorization": basic_auth_header(api.tokens["worker"])}
    started = time.monotonic()
    ws = await api.client.ws_connect("/workers/connect", headers=headers)
    try:
        msg = await asyncio.wait_for(ws.receive(), timeout=15)
    finally:
        await ws.close()
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING), msg
    assert ws.close_code == p.CLOSE_BAD_FRAME, ws.close_code
    print(f"hello-less socket closed after {time.monotonic() - started:.2f} s")


async def test_a_feed_subscriber_cannot_send_a_huge_frame(api: Api) -> None:
    headers = {"Authorization": basic_auth_header(api.tokens["admin"])}
    ws = await api.client.ws_connect("/events", headers=headers)
    try:
        hello = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
        assert hello["type"] == "feed.hello"
        with contextlib.suppress(ConnectionError):  # closed while still sending: fine
            await ws.send_str("x" * (SUBSCRIBER_MAX_FRAME_BYTES + 1))
        msg = await asyncio.wait_for(ws.receive(), timeout=15)
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING), msg
        assert ws.close_code == 1009, ws.close_code  # message too big
    finally:
        await ws.close()
    assert (await api.get("/health")).status == 200
