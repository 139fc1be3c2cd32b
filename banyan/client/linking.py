"""Running tasks after others: make freshly created (inactive) tasks
continuations of their parents. Used by ``banyan submit --after`` and the
TUI's submit form.

One ``add_continuations`` request links every parent to every child, all or
nothing. The server decides each edge from its parent's state: a parent
still pending is waited on; one that has already ended is judged by its
outcome and the child's ``run_when`` at once (satisfied, or never
satisfiable: the child is cancelled, or skipped). A link is never dropped,
so ``continuations``, ``banyan tree`` and ``cancel --tree`` always see it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from banyan.client.trees import fetch_many
from banyan.documents import TaskDoc

if TYPE_CHECKING:
    from banyan.client.http import Client


async def link_after(client: Client, parents: list[str], children: list[str]) -> None:
    """Make ``children`` (created inactive) continuations of ``parents``; a
    child with nothing left to wait on becomes available (the server's rule)."""
    await client.request(
        "POST", "/tasks/add_continuations", json_body=[{"targets": parents, "values": children}]
    )


async def ended_children(client: Client, children: list[str]) -> list[TaskDoc]:
    """Children that ended as they were linked (a parent's outcome means they
    will never run), for a warning."""
    found = await fetch_many(client, children, projection={"state": 1, "execution": 1})
    return [doc for doc in found.values() if doc.get("state") in ("cancelled", "terminated")]
