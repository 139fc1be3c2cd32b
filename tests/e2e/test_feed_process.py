"""The event feed against a real ``banyan-server`` process: a subscriber that
never reads is aborted (its socket is gone, not left holding a close frame
and megabytes of kernel buffer), and SIGTERM with idle subscribers connected
exits at once instead of waiting on them."""

from __future__ import annotations

import base64
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from banyan.tokens import basic_auth_header
from testbed import Cluster, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path)
    yield the_cluster
    the_cluster.close()


def raw_subscriber(cluster: Cluster) -> socket.socket:
    """A websocket upgrade of ``/events`` by hand, with a small receive buffer;
    returns the socket once the 101 has been read. The caller never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", cluster.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /events HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{cluster.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: {basic_auth_header(cluster.token)}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:  # bounded: the server answers or closes
        chunk = sock.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def server_connections_to(cluster: Cluster, port: int) -> int:
    assert cluster.server is not None
    process = psutil.Process(cluster.server.pid)
    return sum(1 for c in process.net_connections(kind="tcp") if c.raddr and c.raddr.port == port)


def test_a_subscriber_that_never_reads_is_aborted(cluster: Cluster) -> None:
    send_timeout_s = 0.5
    cluster.start_server(event_send_timeout_s=send_timeout_s)
    sock = raw_subscriber(cluster)
    port = sock.getsockname()[1]
    try:
        assert server_connections_to(cluster, port) == 1
        batch = [{"command": "true", "name": "n" * 1000}] * 1000  # ~1 MB of events
        # Bounded: loopback buffers take a few MB before the server's own
        # buffer fills; the drop then follows within the send timeout.
        for _ in range(60):
            cluster.http.submit(batch)
            if server_connections_to(cluster, port) == 0:
                break
        started = time.monotonic()
        wait_for(lambda: server_connections_to(cluster, port) == 0, 15, "the server to abort")
        print(f"connection gone {time.monotonic() - started:.2f} s after the last POST")
    finally:
        sock.close()
    assert cluster.http.get("/health").status == 200


def test_sigterm_with_idle_subscribers_exits_at_once(cluster: Cluster) -> None:
    cluster.start_server()
    subscribers = [raw_subscriber(cluster) for _ in range(3)]
    try:
        assert cluster.server is not None
        started = time.monotonic()
        os.kill(cluster.server.pid, signal.SIGTERM)
        code = cluster.server.popen.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        for sock in subscribers:
            sock.close()
    print(f"SIGTERM → exit in {took:.2f} s with 3 idle subscribers")
    assert code == 0
    # A correctness bound, not a benchmark: it once waited 10 s for them.
    assert took < 5, took
