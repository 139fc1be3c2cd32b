"""Expected network errors against a real ``banyan-server`` process are one
rate-limited WARNING line per kind, never a traceback: connection resets,
over-long request lines and headers, and descriptor exhaustion in asyncio's
accept loop (which once logged 1,300 tracebacks in 3 s)."""

from __future__ import annotations

import base64
import os
import resource
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import Cluster, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path)
    the_cluster.start_server()
    yield the_cluster
    the_cluster.close()


def server_log(cluster: Cluster) -> str:
    return cluster.server.log.read_text(errors="replace")


def lines_with(cluster: Cluster, text: str) -> list[str]:
    return [line for line in server_log(cluster).splitlines() if text in line]


def connect(cluster: Cluster) -> socket.socket:
    return socket.create_connection(("127.0.0.1", cluster.port), timeout=10)


def over_long(cluster: Cluster, request: bytes) -> None:
    with connect(cluster) as sock:
        sock.sendall(request)
        assert sock.recv(100).startswith(b"HTTP/1.0 400"), request[:40]


def reset_mid_body(cluster: Cluster) -> None:
    """A POST whose client resets the connection half-way through the body,
    once the server is in the view (it has answered ``100 Continue``)."""
    sock = connect(cluster)
    auth = base64.b64encode(f"{cluster.token}:".encode()).decode()
    sock.sendall(
        (
            f"POST /tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n"
            "Expect: 100-continue\r\n\r\n"
        ).encode()
    )
    assert sock.recv(100).startswith(b"HTTP/1.1 100")
    sock.sendall(b"[" + b" " * 1000)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST


def test_resets_and_over_long_lines_are_one_warning_each(cluster: Cluster) -> None:
    for _ in range(20):
        over_long(cluster, b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        over_long(cluster, b"GET /health HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 10_000 + b"\r\n\r\n")
        reset_mid_body(cluster)
    wait_for(lambda: lines_with(cluster, "connection reset"), 10, "a reset line")
    wait_for(lambda: lines_with(cluster, "over the parser's limit"), 10, "a long-line line")
    assert cluster.http.get("/health").status == 200
    text = server_log(cluster)
    print(text)
    assert "Traceback" not in text and "ERROR" not in text
    # 60 bad connections in well under the 10 s period: one line each kind
    # (and perhaps the sum-up line of the period).
    assert len(lines_with(cluster, "connection reset")) <= 2
    assert len(lines_with(cluster, "over the parser's limit")) <= 2


def test_descriptor_exhaustion_is_one_warning_per_period(cluster: Cluster) -> None:
    assert cluster.server is not None
    pid = cluster.server.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    in_use = len(os.listdir(f"/proc/{pid}/fd"))
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 3, hard))
    clients: list[socket.socket] = []
    try:
        # The kernel completes connections into the listen backlog whether or
        # not the server can accept them: a bounded number, each with a request.
        for _ in range(40):
            sock = connect(cluster)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            clients.append(sock)
        # accept() fails with EMFILE on every retry; the first line now, the
        # count of the held-back ones when the 10 s period ends.
        summed = wait_for(
            lambda: (
                lines_with(cluster, "cannot accept connections: ")
                and lines_with(cluster, "more in the last")
            ),
            30,
            "the sum-up line of the period",
        )
        print(server_log(cluster))
        assert "Too many open files" in server_log(cluster)
        held = int(summed[0].split("cannot accept connections: ")[1].split()[0])
        assert held >= 1  # there were more, and they were held back
        assert len(lines_with(cluster, "cannot accept connections")) <= 3
        assert "Traceback" not in server_log(cluster)
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        for sock in clients:
            sock.close()
    assert cluster.http.get("/health").status == 200  # it serves again
