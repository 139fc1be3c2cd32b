"""The event feed part of ``Client`` (mixed into it): ``events()`` yields the
feed's frames in ``seq`` order over one websocket, reconnecting by itself and
resuming from the last ``seq`` it yielded, so a caller sees every event once;
``typed_events()`` decodes them with ``banyan.events``. aiohttp is imported
only when the feed is used.

With standby servers (``Connection.fallbacks``) a feed that cannot connect
switches to the next server (``Client.fail_over``) and resumes there from
the same ``seq``: servers that share one database share one event log."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from banyan.client.discovery import Connection
from banyan.client.tls import connect_reason, unreachable
from banyan.errors import BanyanError, ServerUnreachable

if TYPE_CHECKING:
    import aiohttp

    from banyan.events import Event, FeedResync

RECONNECT_MAX_S = 5.0


class _Feeds(Protocol):
    """What the feed needs of the client it is mixed into."""

    connection: Connection
    ssl: ssl.SSLContext | bool

    @property
    def session(self) -> aiohttp.ClientSession: ...

    def fail_over(self, failed: str) -> bool: ...

    def events(
        self,
        *,
        since: int | None = None,
        where: Mapping[str, Any] | None = None,
        types: Sequence[str] | None = None,
        reconnect: bool = True,
    ) -> AsyncIterator[dict[str, Any]]: ...


class FeedMethods:
    async def events(
        self: _Feeds,
        *,
        since: int | None = None,
        where: Mapping[str, Any] | None = None,
        types: Sequence[str] | None = None,
        reconnect: bool = True,
    ) -> AsyncIterator[dict[str, Any]]:
        """Events in ``seq`` order; control frames (``feed.resync``) are yielded
        too so the caller can refetch a snapshot. Reconnects and resumes.
        Plain frames (dicts); :meth:`typed_events` decodes them."""
        import aiohttp

        last = since
        delay = 0.1
        while True:
            server = self.connection.server
            url = self.connection.ws_base + "/events"
            params: dict[str, str] = {}
            if last is not None:
                params["since"] = str(last)
            if where:
                params["where"] = json.dumps(where)
            if types:
                params["types"] = ",".join(types)
            try:
                async with self.session.ws_connect(url, params=params, ssl=self.ssl) as ws:
                    delay = 0.1
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        frame = json.loads(msg.data)
                        if frame.get("type") == "feed.hello":
                            head = int(frame["seq"])
                            if last is None or head < last:
                                # None: start from now. Behind what we saw: the
                                # database was restored or replaced, its seqs
                                # start over; the server follows with feed.resync.
                                last = head
                            continue
                        if "seq" in frame:
                            if last is not None and frame["seq"] <= last:
                                continue
                            last = int(frame["seq"])
                        yield frame
            except aiohttp.WSServerHandshakeError as exc:
                raise BanyanError.from_eve(
                    exc.status, {"_error": {"message": exc.message}}
                ) from exc
            except aiohttp.ClientConnectorCertificateError as exc:
                raise unreachable(url, exc) from exc  # retrying will not help
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                if not reconnect:
                    raise ServerUnreachable(
                        f"event feed from {url} lost: {connect_reason(exc)}"
                    ) from exc
                if isinstance(exc, aiohttp.ClientConnectorError):
                    self.fail_over(server)  # refused or unreachable: the next one, if any
            if not reconnect:
                return
            await asyncio.sleep(delay)
            delay = min(RECONNECT_MAX_S, delay * 2)

    async def typed_events(
        self: _Feeds,
        *,
        since: int | None = None,
        where: Mapping[str, Any] | None = None,
        types: Sequence[str] | None = None,
        reconnect: bool = True,
    ) -> AsyncIterator[Event | FeedResync]:
        """:meth:`events` decoded with ``banyan.events``: each event as its typed
        model (``TaskState``, ``WorkerLost``...), ``FeedResync`` when the caller
        must refetch a snapshot. Frames of a type this client does not know (a
        newer server's) are skipped. The wire format is unchanged."""
        from banyan.events import EVENT_TYPES, FeedResync, decode

        stream = self.events(since=since, where=where, types=types, reconnect=reconnect)
        try:
            async for frame in stream:
                kind = frame.get("type")
                if kind == "feed.resync":
                    yield FeedResync.model_validate(frame)
                elif kind in EVENT_TYPES:
                    yield decode(frame)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
