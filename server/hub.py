"""The event hub: after every commit it reads the new rows of the events
table (in ``seq`` order, once) and hands them to its subscribers. The worker
gateway subscribes to push "work available" and "cancel"; the websocket feed
will subscribe the same way. Reading the table, rather than passing objects
around, means subscribers only ever see what was committed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from banyan.supervise import SideTasks
from server.stores.base import Store

log = logging.getLogger(__name__)
Event = dict[str, Any]
Subscriber = Callable[[list[Event]], None]
_READ_BATCH = 1000


class EventHub:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._subscribers: list[Subscriber] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.last_seq = 0

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def poke(self) -> None:
        """Called after each commit: there may be new events."""
        self._wake.set()

    async def start(self) -> None:
        self.last_seq = await self._store.last_seq()
        self._store.add_commit_listener(self.poke)
        self._task = SideTasks("server").spawn(self._run(), name="event-hub")  # failure: exit 70

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                while True:
                    events = await self._store.events_since(self.last_seq, limit=_READ_BATCH)
                    if not events:
                        break
                    self.last_seq = events[-1]["seq"]
                    for subscriber in self._subscribers:
                        try:
                            subscriber(events)
                        except Exception:  # one bad subscriber must not stop the others
                            log.exception("event subscriber failed")
                    if len(events) < _READ_BATCH:
                        # Caught up as of this read: a later commit has poked
                        # the wake event again, so a second (empty) read per
                        # commit would only cost a reader round trip.
                        break
            except Exception:
                log.exception("reading events failed; retrying on the next commit")
