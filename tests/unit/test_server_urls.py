"""Several server URLs for one client (failover, issue 14): how ``--server``
and ``BANYAN_SERVER`` lists are read, what is refused, and the order in which
``Connection.failover`` goes through them."""

from __future__ import annotations

import pytest

from banyan.client.discovery import Connection, discover, server_urls
from banyan.errors import InvalidInput


@pytest.fixture(autouse=True)
def _no_discovery_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in ("BANYAN_SERVER", "BANYAN_TOKEN", "BANYAN_CA_CERT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BANYAN_CLIENT_FILE", f"{tmp_path}/absent.json")


def test_repeated_and_comma_separated_urls_keep_their_order() -> None:
    urls = server_urls(["http://a:5100", "b:5101, https://c/", "http://a:5100"], source="--server")
    assert urls == ("http://a:5100", "http://b:5101", "https://c")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty server URL in --server"),
        ("  ", "empty server URL in --server"),
        ("http://a:5100,", "empty server URL in --server"),
        ("http://a:5100,,http://b:5100", "empty server URL in --server"),
        ("ftp://a:5100", "the scheme must be http or https"),
        ("http://", "it names no host"),
        (":5100", "it names no host"),
        ("a:port", "the port is not a number"),
        ("a:99999", "the port is not a number"),
        ("http://a b:5100", "it contains a space"),
        ("http://a:5100/?x=1", "no ?query or #fragment"),
    ],
)
def test_an_empty_or_malformed_url_is_refused_in_one_line(text: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        server_urls(["http://ok:5100", text], source="--server")
    assert words in caught.value.message
    assert "\n" not in caught.value.message


def test_discover_reads_a_list_from_flags_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flags = discover(["http://a:1", "http://b:2"], "tok")
    assert flags.servers == ("http://a:1", "http://b:2")
    assert (flags.server, flags.fallbacks) == ("http://a:1", ("http://b:2",))
    monkeypatch.setenv("BANYAN_SERVER", "http://c:3,http://d:4")
    assert discover(None, "tok").servers == ("http://c:3", "http://d:4")
    assert discover("http://e:5", "tok").servers == ("http://e:5",)  # flags win
    monkeypatch.setenv("BANYAN_SERVER", "http://c:3,")
    with pytest.raises(InvalidInput, match=r"empty server URL in \$BANYAN_SERVER"):
        discover(None, "tok")
    monkeypatch.setenv("BANYAN_SERVER", "")  # set but empty: as if unset
    assert discover(None, "tok").servers == ("http://127.0.0.1:5100",)


def test_failover_goes_round_the_list_once_per_round() -> None:
    connection = Connection(server="http://a", token="t", fallbacks=("http://b", "http://c"))
    seen = [connection.server]
    for _ in range(3):
        connection = connection.failover()
        seen.append(connection.server)
    assert seen == ["http://a", "http://b", "http://c", "http://a"]
    assert connection.ws_base == "ws://a"
    alone = Connection(server="https://a", token="t")
    assert alone.failover() is alone
    assert alone.ws_base == "wss://a"
