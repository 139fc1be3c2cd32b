"""Forgetting what is no longer needed, in the background: workers that left
or were lost more than ``worker_retention_s`` ago (task history keeps their
names as text, so nothing refers to the rows)."""

from __future__ import annotations

import asyncio
import logging
import time

from banyan.errors import BanyanError
from server.stores.base import Store

log = logging.getLogger(__name__)
MAX_PERIOD_S = 60.0


def period_for(retention_s: float) -> float:
    """How often to look: every minute, or more often for a short retention."""
    return min(MAX_PERIOD_S, retention_s / 2)


async def prune_workers(store: Store, *, retention_s: float) -> None:
    """Forget old departed workers every ``period_for(retention_s)`` (a loop)."""
    period_s = period_for(retention_s)
    while True:
        try:
            pruned = await store.prune_workers(before=time.time() - retention_s)
        except BanyanError as exc:  # e.g. the disk is full: try again next period
            log.warning("pruning departed workers failed: %s", exc)
        else:
            if pruned:
                log.info("forgot %d departed workers: %s", len(pruned), ", ".join(pruned))
        await asyncio.sleep(period_s)
