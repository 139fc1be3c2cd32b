"""The event hub: the events of every commit, in ``seq`` order, once, to
its subscribers. The worker gateway subscribes to push "work available" and
"cancel"; the websocket feed subscribes the same way. Subscribers only ever
see what was committed.

A store that can (SQLite) hands the hub each commit's events right after it
(``Store.add_event_listener``), so the table they were just written to is not
read again; a gap before them (events another process wrote, such as an admin
command on the same database) is read from the table first. Otherwise the
hub reads the new rows of the table after every commit.
"""

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
        self._pushed: list[Event] = []
        self._direct = False
        self.last_seq = 0

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def poke(self) -> None:
        """Called after each commit: there may be new events."""
        self._wake.set()

    def _receive(self, events: list[Event]) -> None:
        """A commit's events, from the store (``add_event_listener``)."""
        self._pushed.extend(events)
        self._wake.set()

    async def start(self) -> None:
        self.last_seq = await self._store.last_seq()
        self._direct = self._store.add_event_listener(self._receive)
        if not self._direct:
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
                if self._direct:
                    await self._take_pushed()
                else:
                    await self._read_new()
            except Exception:
                log.exception("reading events failed; retrying on the next commit")

    async def _take_pushed(self) -> None:
        events, self._pushed = self._pushed, []
        if not events:
            return
        if events[0]["seq"] > self.last_seq + 1:  # written by another process meanwhile
            await self._read_new(until=events[0]["seq"] - 1)
        self._publish([e for e in events if e["seq"] > self.last_seq])

    async def _read_new(self, *, until: int | None = None) -> None:
        """The table's events after ``last_seq`` (up to ``until``), published."""
        while True:
            events = await self._store.events_since(self.last_seq, limit=_READ_BATCH)
            full = len(events) == _READ_BATCH
            if until is not None:
                events = [e for e in events if e["seq"] <= until]
            if not events:
                return
            self._publish(events)
            if not full or (until is not None and self.last_seq >= until):
                # Caught up as of this read: a later commit wakes the hub
                # again, so a second (empty) read per commit would only cost
                # a reader round trip.
                return

    def _publish(self, events: list[Event]) -> None:
        if not events:
            return
        self.last_seq = events[-1]["seq"]
        for subscriber in self._subscribers:
            try:
                subscriber(events)
            except Exception:  # one bad subscriber must not stop the others
                log.exception("event subscriber failed")
