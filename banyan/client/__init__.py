"""The Banyan client library: an async client for the REST API and the event
feed (``Client``), how a program finds its server and token (``discover``),
TLS trust, and the helpers every front end shares: continuation trees,
running tasks after others, and words for what the API returns.

The ``banyan`` CLI and the TUI are front ends built on this package; it
never imports either of them::

    from banyan.client import Client, discover

    async with Client(discover()) as client:
        task_id = (await client.submit({"command": "echo hi", "state": "available"}))["_id"]

Names are imported on first use (PEP 562), so ``import banyan.client.discovery``
does not load aiohttp: the CLI starts faster when it has no request to make.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from banyan.client.discovery import (
        Connection,
        add_connection_options,
        client_file,
        discover,
    )
    from banyan.client.http import RECONNECT_MAX_S, Client, check_tls
    from banyan.client.linking import link_after
    from banyan.client.tls import client_context, unreachable
    from banyan.client.trees import descendants, fetch_many, walk_tree

_HOMES = {
    "Connection": "discovery",
    "add_connection_options": "discovery",
    "client_file": "discovery",
    "discover": "discovery",
    "RECONNECT_MAX_S": "http",
    "Client": "http",
    "check_tls": "http",
    "link_after": "linking",
    "client_context": "tls",
    "unreachable": "tls",
    "descendants": "trees",
    "fetch_many": "trees",
    "walk_tree": "trees",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'banyan.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"banyan.client.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "RECONNECT_MAX_S",
    "Client",
    "Connection",
    "add_connection_options",
    "check_tls",
    "client_context",
    "client_file",
    "descendants",
    "discover",
    "fetch_many",
    "link_after",
    "unreachable",
    "walk_tree",
]
