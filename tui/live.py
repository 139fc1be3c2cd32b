"""Keeping the TUI's model live: load a snapshot, follow the event feed,
reconnect with ``since``, reload on ``feed.resync``, and apply what arrives
in batches.

``LiveApp`` is the base of ``BanyanApp``: it owns the data source, the
model and the link state, and runs every network call in a Textual worker
(``@work(exclusive=True)``) that posts a typed message (``tui.messages``).
Events are not applied one by one: the feed worker appends them to a buffer
and a timer applies the buffer every ``apply_interval_s`` (100 ms), so a
burst of a thousand events costs one pass over the table, not a thousand.
While a snapshot loads, the buffer waits and is applied on top of it.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Mapping

from textual import work
from textual.app import App

from banyan.documents import TaskDoc
from banyan.errors import BanyanError
from banyan.events import Event
from tui.messages import (
    FeedConnected,
    FeedLost,
    FeedResync,
    ReasonsLoaded,
    SnapshotFailed,
    SnapshotLoaded,
    StatsLoaded,
    WorkersLoaded,
)
from tui.source import DataSource
from tui.state import Changes, Link, Model, RateMeter, readable

RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 5.0
STATS_EVERY_S = 5.0
# Why waiting tasks wait changes with the workers, not with the tasks' own
# events: ask again, for the newest this many waiting tasks, with the stats.
REASONS_LIMIT = 1000
WORKERS_EVERY_S = 1.0  # at most this often, and only after a change
FREEZE_AFTER_TASKS = 20_000

BatchHook = Callable[[list[Event], float], None]


class LiveApp(App[None]):
    """The data half of the TUI; subclasses draw it (``on_model_*`` hooks)."""

    def __init__(
        self,
        source: DataSource,
        *,
        clock: Callable[[], float] = time.time,
        apply_interval_s: float = 0.1,
        heartbeat_interval_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.source = source
        self.clock = clock
        self.apply_interval_s = apply_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.model: Model | None = None
        self.link = Link()
        self.rate = RateMeter()
        self.notes: list[str] = []
        self.received_seq: int | None = None  # the last seq the feed gave us
        self.on_batch_applied: BatchHook | None = None  # the benchmark listens here
        self._buffer: list[Event] = []  # decoded, waiting for the next apply
        self._feed_up = False
        self._snapshot_pending = False
        self._workers_stale = False
        self._last_workers_fetch = 0.0

    # --- start ----------------------------------------------------------------

    def start_live(self) -> None:
        self.set_interval(self.apply_interval_s, self._apply_buffer)
        self.set_interval(1.0, self._second)
        self.set_interval(STATS_EVERY_S, self._fetch_stats)
        self.set_interval(STATS_EVERY_S, self._fetch_reasons)
        self._follow_feed()

    # --- the feed -------------------------------------------------------------

    @work(exclusive=True, group="feed")
    async def _follow_feed(self) -> None:
        delay = RECONNECT_MIN_S
        while True:
            since = self.received_seq
            try:
                async for frame in self.source.events(since):
                    kind = frame.get("type")
                    if kind == "feed.hello":
                        delay = RECONNECT_MIN_S
                        self.post_message(FeedConnected(int(frame.get("seq", 0)), since))
                    elif kind == "feed.resync":
                        self.post_message(FeedResync())
                    else:
                        seq = frame.get("seq")
                        if isinstance(seq, int):
                            self.received_seq = seq
                        event = readable(frame)
                        if event is not None:
                            self._buffer.append(event)
                error = "the server closed the event feed"
            except BanyanError as exc:
                error = exc.message
            self.post_message(FeedLost(error))
            await asyncio.sleep(delay)
            delay = min(RECONNECT_MAX_S, delay * 2)

    def on_feed_connected(self, message: FeedConnected) -> None:
        self._feed_up = True
        if message.since is not None and message.seq < message.since:
            # The server's history restarted (a new database): nothing we hold holds.
            self.received_seq = message.seq
            self._buffer.clear()
            self._load_snapshot()
        elif self.model is None or self._snapshot_pending:
            self._load_snapshot()
        else:
            self.link.connected()
        self.on_link_changed()

    def on_feed_lost(self, message: FeedLost) -> None:
        self._feed_up = False
        self.link.lost(self.clock(), message.error)
        self.on_link_changed()

    def on_feed_resync(self, message: FeedResync) -> None:
        self._load_snapshot()

    # --- snapshots ------------------------------------------------------------

    def _load_snapshot(self) -> None:
        self._snapshot_pending = True
        self.link.loading()
        self._fetch_snapshot()

    @work(exclusive=True, group="snapshot")
    async def _fetch_snapshot(self) -> None:
        try:
            snapshot = await self.source.snapshot()
        except BanyanError as exc:
            self.post_message(SnapshotFailed(exc.message))
            return
        self.post_message(SnapshotLoaded(snapshot))

    def on_snapshot_loaded(self, message: SnapshotLoaded) -> None:
        snap = message.snapshot
        now = self.clock()
        self.model = Model.from_snapshot(
            snap.tasks, snap.workers, snap.stats, now=now, server_total=snap.total_tasks
        )
        self.model.job_names = dict(snap.job_names)
        if len(snap.tasks) >= FREEZE_AFTER_TASKS:
            # ~10 objects a task, long-lived: keep the cyclic GC from rescanning
            # them all (a pause of half a second at 100,000) on every full collection.
            gc.collect()
            gc.freeze()
        self.notes = list(snap.notes)
        self._snapshot_pending = False
        self.link.snapshot_loaded(feed_up=self._feed_up)
        if self.received_seq is not None:
            self.model.seq = self.received_seq
        self.on_model_reset()
        self._apply_buffer()
        self.on_link_changed()

    def on_snapshot_failed(self, message: SnapshotFailed) -> None:
        self.link.error = message.error
        self.on_link_changed()
        self.set_timer(RECONNECT_MAX_S, self._retry_snapshot)

    def _retry_snapshot(self) -> None:
        if self._snapshot_pending and self._feed_up:
            self._fetch_snapshot()

    # --- applying events ------------------------------------------------------

    def _apply_buffer(self) -> None:
        if self.model is None or self._snapshot_pending or not self._buffer:
            return
        frames, self._buffer = self._buffer, []
        changes = self.model.apply(frames)
        now = self.clock()
        self.rate.add(len(frames), now)
        if changes.workers_stale:
            self._workers_stale = True
        if changes:
            self.on_model_changed(changes)
        if self.on_batch_applied is not None:
            self.on_batch_applied(frames, time.perf_counter())

    def _second(self) -> None:
        now = self.clock()
        if self._workers_stale and time.monotonic() - self._last_workers_fetch >= WORKERS_EVERY_S:
            self._workers_stale = False
            self._last_workers_fetch = time.monotonic()
            self._fetch_workers()
        self.on_second(now)

    @work(exclusive=True, group="workers")
    async def _fetch_workers(self) -> None:
        try:
            found = await self.source.workers()
        except BanyanError:
            self._workers_stale = True  # try again on the next second
            return
        self.post_message(WorkersLoaded(found))

    def on_workers_loaded(self, message: WorkersLoaded) -> None:
        if self.model is not None:
            self.model.set_workers(message.workers, now=self.clock())
            self.on_model_changed(Changes(workers=set(self.model.workers)))

    @work(exclusive=True, group="stats")
    async def _fetch_stats(self) -> None:
        if self.model is None or not self.link.live:
            return
        try:
            stats = await self.source.stats()
        except BanyanError:
            return
        self.post_message(StatsLoaded(stats))

    @work(exclusive=True, group="reasons")
    async def _fetch_reasons(self) -> None:
        if self.model is None or not self.link.live:
            return
        asked = self.model.waiting_ids(REASONS_LIMIT)
        if not asked:
            return
        try:
            reasons = await self.source.pending_reasons(asked)
        except BanyanError:
            return
        self.post_message(ReasonsLoaded(asked, reasons))

    def on_reasons_loaded(self, message: ReasonsLoaded) -> None:
        if self.model is not None:
            changed = self.model.set_reasons(message.asked, message.reasons)
            if changed:
                self.on_model_changed(Changes(tasks=changed))

    def on_stats_loaded(self, message: StatsLoaded) -> None:
        # Without /stats the counts come from the tasks and the feed: keep them.
        if self.model is not None and (message.stats or self.model.counts_from_server):
            self.model.set_stats(message.stats)
            self.on_model_changed(Changes(queues=True))

    # --- hooks for the drawing half ---------------------------------------------

    def on_model_reset(self) -> None:
        """A new model (first snapshot or a resync)."""

    def on_model_changed(self, changes: Changes) -> None:
        """A batch of events (or a side fetch) changed ``changes``."""

    def on_link_changed(self) -> None:
        """Live, loading, reconnecting…"""

    def on_second(self, now: float) -> None:
        """Once a second: ages, rates, staleness."""

    def merge_tasks(self, docs: Mapping[str, TaskDoc]) -> set[str]:
        if self.model is None:
            return set()
        return self.model.merge_docs(docs.values())
