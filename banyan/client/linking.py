"""Running tasks after others: make freshly created (inactive) tasks
continuations of their parents, coping with a parent that ends meanwhile.
Used by ``banyan submit --after`` and the TUI's submit form."""

from __future__ import annotations

from typing import TYPE_CHECKING

from banyan.client.format import outcome
from banyan.client.trees import fetch_many
from banyan.errors import Conflict, NotFound

if TYPE_CHECKING:
    from banyan.client.http import Client

LINK_ATTEMPTS = 3


def check_parent(parent: str, result: str) -> None:
    """Refuse a parent whose ``outcome`` means its continuations would never run."""
    if result in ("failed", "cancelled"):
        ended = "failed" if result == "failed" else "was cancelled"
        raise Conflict(f"task {parent} {ended}: a task submitted after it would never run")


async def link_after(client: Client, parents: list[str], children: list[str]) -> None:
    """Make ``children`` (created inactive) continuations of ``parents``."""
    for attempt in range(LINK_ATTEMPTS):
        found = await fetch_many(client, parents, projection={"state": 1, "execution": 1})
        live = []
        for parent in parents:
            if parent not in found:
                raise NotFound(f"no task with id {parent}")
            result = outcome(found[parent])
            check_parent(parent, result)
            if result == "pending":
                live.append(parent)
        if not live:  # every parent has already succeeded
            await client.update_many([{"_id": i, "state": "available"} for i in children])
            return
        try:
            await client.request(
                "POST",
                "/tasks/add_continuations",
                json_body=[{"targets": live, "values": children}],
            )
            return
        except Conflict:
            # A parent ended meanwhile: look again (it may have succeeded).
            if attempt == LINK_ATTEMPTS - 1:
                raise
