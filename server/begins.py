"""The begin-time timer: one timer for the earliest ``not_before`` still ahead
among available tasks (Slurm's ``--begin``). When it comes, workers are told
``work_available`` (the claim policy, ``server.domain.claims``, hands such a
task out only once its time has come), and the timer is set for the next
one. No loop per task and no polling: the timer sleeps until the earliest
begin time, or until a task is made available (which may begin earlier).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from banyan.errors import BanyanError
from server.stores.base import Store

# After a store error (e.g. a busy database), look again after this long.
RETRY_S = 1.0


class BeginTimer:
    def __init__(self, store: Store, on_due: Callable[[], None]) -> None:
        self._store = store
        self._on_due = on_due
        self._changed = asyncio.Event()
        self._changed.set()  # look once at start: begin times survive a restart

    def poke(self) -> None:
        """Tasks became available: the earliest begin time may have changed."""
        self._changed.set()

    async def run(self) -> None:
        """Forever: sleep until the earliest begin time (or a poke), then tell."""
        due: float | None = None
        while True:
            if self._changed.is_set():
                self._changed.clear()
                try:
                    due = await self._store.next_begin()
                except BanyanError:
                    due = time.time() + RETRY_S
            timeout = None if due is None else max(0.0, due - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=timeout)
                continue  # poked: look again
            # The earliest begin time has come: claims may now hand it out.
            self._on_due()
            self._changed.set()
