"""Task ids as people type them: a whole id, or a unique leading prefix, as
git takes abbreviated commit ids.

A prefix ``p`` is looked up as the id range ``p000… ≤ _id ≤ pfff…`` (ids
are 24 hex digits, so the range holds exactly the ids starting with ``p``).
Ids are time-ordered: tasks made in the same second share their first 8
digits, and those of one submission their first 18, so a short prefix of a
fresh task is often ambiguous; an ambiguous prefix is refused with the
matching ids listed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from banyan.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from banyan.client.http import Client

ID_DIGITS = 24
MIN_PREFIX = 4  # as git: shorter is refused, it would match too much
SHOWN_MATCHES = 10
_HEX = re.compile(r"[0-9a-f]+")


def check_id_text(text: str) -> str:
    """``text`` lower-cased if it can name a task (4 to 24 hex digits)."""
    lowered = text.strip().lower()
    if not _HEX.fullmatch(lowered) or not MIN_PREFIX <= len(lowered) <= ID_DIGITS:
        raise NotFound(
            f"no task with id {text} (ids are 24 hex digits; a unique prefix of at least "
            f"{MIN_PREFIX} digits will do)"
        )
    return lowered


def prefix_where(prefix: str, field: str = "_id") -> dict[str, dict[str, str]]:
    """The ``where`` matching every id in ``field`` that starts with ``prefix``."""
    pad = ID_DIGITS - len(prefix)
    return {field: {"$gte": prefix + "0" * pad, "$lte": prefix + "f" * pad}}


async def resolve_id(client: Client, text: str) -> str:
    """The one task id ``text`` names (a whole id is taken as it is)."""
    prefix = check_id_text(text)
    if len(prefix) == ID_DIGITS:
        return prefix
    found = await client.find(
        prefix_where(prefix), projection={"name": 1}, sort="_id", max_results=SHOWN_MATCHES
    )
    items = found["_items"]
    if not items:
        raise NotFound(f"no task id starts with {prefix}")
    if len(items) > 1:
        total = found.get("_meta", {}).get("total", len(items))
        shown = ", ".join(i["_id"] + (f" ({i['name']})" if i.get("name") else "") for i in items)
        more = f" and {total - len(items)} more" if total > len(items) else ""
        raise InvalidInput(
            f"id prefix {prefix} is ambiguous: it matches {shown}{more}; give more digits"
        )
    return str(items[0]["_id"])


async def resolve_ids(client: Client, texts: list[str]) -> list[str]:
    """Each text resolved (``resolve_id``), duplicates dropped, order kept."""
    return list(dict.fromkeys([await resolve_id(client, t) for t in texts]))


async def resolve_job(client: Client, text: str) -> str:
    """The one job id ``text`` names. A job's id is its first task's id, so it
    is typed the same way: whole, or a unique prefix. The lowest and the highest
    job id starting with the prefix are asked for (two tasks' ``job``): equal,
    the prefix names one job, whatever its number of tasks."""
    prefix = check_id_text(text)
    if len(prefix) == ID_DIGITS:
        return prefix
    where = prefix_where(prefix, "job")
    ends = []
    for sort in ("job", "-job"):
        found = await client.find(where, projection={"job": 1}, sort=sort, max_results=1)
        if not found["_items"]:
            raise NotFound(f"no job id starts with {prefix}")
        ends.append(str(found["_items"][0]["job"]))
    if ends[0] != ends[1]:
        raise InvalidInput(
            f"job id prefix {prefix} is ambiguous: it matches {ends[0]}, …, {ends[1]}; "
            "give more digits"
        )
    return ends[0]
