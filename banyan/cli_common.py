"""What every ``banyan`` command gets: the parsed arguments, where to write,
and a client connected the way discovery says (flags, then ``BANYAN_SERVER``
/ ``BANYAN_TOKEN`` / ``BANYAN_CA_CERT``, then the local server's client file).

Also the pieces several commands share: id checking, chunked lookups and the
walk over a continuation tree.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from banyan.cli_output import Output
from banyan.client import Client
from banyan.discovery import Connection, discover
from banyan.errors import InvalidInput, NotFound
from banyan.ids import is_id

# Ids per ``where={"_id": {"$in": [...]}}`` query: keeps the URL well under
# the server's request-line limit (8 KiB).
IDS_PER_QUERY = 100


class UsageError(InvalidInput):
    """Input the CLI refuses before sending anything (exit status 2)."""


@dataclass
class Context:
    args: argparse.Namespace
    out: Output
    _connection: Connection | None = field(default=None, init=False)

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
        """The server's URL once discovery has run (for error messages)."""
        return None if self._connection is None else self._connection.server

    def client(self) -> Client:
        return Client(self.connection)


Handler = Callable[[Context], Awaitable[int]]


def check_ids(ids: Iterable[str]) -> list[str]:
    """Lower-cased ids, refusing anything that is not 24 hex digits (as the server would)."""
    checked = []
    for task_id in ids:
        lowered = task_id.strip().lower()
        if not is_id(lowered):
            raise NotFound(f"no task with id {task_id} (ids are 24 hex digits)")
        checked.append(lowered)
    return list(dict.fromkeys(checked))


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


def chunked(items: Sequence[str], size: int = IDS_PER_QUERY) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


async def fetch_many(
    client: Client, ids: Sequence[str], *, projection: dict[str, int] | None = None
) -> dict[str, dict[str, Any]]:
    """The tasks with these ids, by id (unknown ids are simply absent)."""
    found: dict[str, dict[str, Any]] = {}
    for part in chunked(ids):
        page = await client.find(
            {"_id": {"$in": part}}, projection=projection, max_results=len(part)
        )
        found.update({item["_id"]: item for item in page["_items"]})
    return found


async def walk_tree(
    client: Client, root: dict[str, Any], *, max_tasks: int = 100_000
) -> dict[str, dict[str, Any]]:
    """Every task reachable from ``root`` through ``continuations``, by id, level
    by level (one query per hundred ids). A task with several parents appears once."""
    tasks = {root["_id"]: root}
    frontier = [root]
    while frontier and len(tasks) < max_tasks:
        wanted = [c for t in frontier for c in t.get("continuations") or [] if c not in tasks]
        wanted = list(dict.fromkeys(wanted))[: max_tasks - len(tasks)]
        if not wanted:
            break
        found = await fetch_many(client, wanted)
        tasks.update(found)
        frontier = list(found.values())
    return tasks


def descendants(tasks: dict[str, dict[str, Any]], root_id: str) -> list[str]:
    """Ids downstream of ``root_id`` (not itself), each once, nearest first."""
    seen: dict[str, None] = {}
    frontier = [root_id]
    while frontier:
        nxt = []
        for task_id in frontier:
            for child in tasks.get(task_id, {}).get("continuations") or []:
                if child not in seen and child != root_id and child in tasks:
                    seen[child] = None
                    nxt.append(child)
        frontier = nxt
    return list(seen)
