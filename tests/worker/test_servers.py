"""The worker's choice of server when it was given several (failover, issue
14): the next one at once after a loss, a wait only after a whole round."""

from __future__ import annotations

from banyan.client.discovery import Connection
from worker.servers import Servers


def rounds(servers: Servers, losses: int) -> list[tuple[str, bool]]:
    """The server moved to, and whether at once, after each of ``losses``."""
    out = []
    for _ in range(losses):
        at_once = servers.next()
        out.append((servers.server, at_once))
    return out


def test_one_server_waits_between_tries() -> None:
    servers = Servers(Connection(server="http://a", token="t"))
    assert rounds(servers, 2) == [("http://a", False), ("http://a", False)]
    assert servers.gateway_url == "ws://a/workers/connect"


def test_the_next_server_at_once_and_a_wait_after_each_round() -> None:
    servers = Servers(Connection(server="http://a", token="t", fallbacks=("http://b", "http://c")))
    assert rounds(servers, 6) == [
        ("http://b", True),
        ("http://c", True),
        ("http://a", False),  # a, b and c failed: wait, then a again
        ("http://b", True),
        ("http://c", True),
        ("http://a", False),
    ]


def test_a_connection_starts_a_new_round() -> None:
    servers = Servers(Connection(server="https://a", token="t", fallbacks=("https://b",)))
    assert servers.next()  # a lost: b at once
    servers.connected()  # b admitted the worker
    assert rounds(servers, 2) == [("https://a", True), ("https://b", False)]
    assert servers.gateway_url == "wss://b/workers/connect"
