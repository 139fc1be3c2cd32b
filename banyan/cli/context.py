"""What every ``banyan`` command gets: the parsed arguments, where to write,
and a client connected the way discovery says (flags, then ``BANYAN_SERVER``
/ ``BANYAN_TOKEN`` / ``BANYAN_CA_CERT``, then the local server's client file),
and the input checks several commands share (ids, ``--where``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from banyan.cli.output import Output
from banyan.client.discovery import Connection, discover
from banyan.client.ids import check_id_text
from banyan.errors import InvalidInput

if TYPE_CHECKING:
    from banyan.client.http import Client


class UsageError(InvalidInput):
    """Input the CLI refuses before sending anything (exit status 2)."""


@dataclass
class Context:
    args: argparse.Namespace
    out: Output
    _connection: Connection | None = field(default=None, init=False)
    _client: Client | None = field(default=None, init=False)

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            self._connection = discover(
                getattr(self.args, "server", None),
                getattr(self.args, "token", None),
                getattr(self.args, "ca_cert", None),
            )
        return self._connection

    @property
    def server_url(self) -> str | None:
        """The server's URL once discovery has run (for error messages): the
        one the last client used, which may be a standby it switched to."""
        if self._client is not None:
            return self._client.connection.server
        return None if self._connection is None else self._connection.server

    def client(self) -> Client:
        # http.client, not aiohttp, for the requests: aiohttp's import was most of a
        # call's start time (the event feed still imports it, when used).
        from banyan.client.http import Client

        # On the server the last client switched to, if it did (several --server).
        connection = self.connection if self._client is None else self._client.connection
        self._client = Client(connection, transport="stdlib")
        return self._client


Handler = Callable[[Context], Awaitable[int]]


def check_ids(ids: Iterable[str]) -> list[str]:
    """Lower-cased ids or id prefixes (4 to 24 hex digits), refusing anything
    else before a request; ``banyan.client.ids.resolve_ids`` makes them whole."""
    return list(dict.fromkeys(check_id_text(i) for i in ids))


def parse_where(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        where = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--where is not valid JSON: {exc}") from exc
    if not isinstance(where, dict):
        raise UsageError('--where must be a JSON object, e.g. \'{"queue": "gpu"}\'')
    return where
