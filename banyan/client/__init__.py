"""The Banyan client library: an async client for the REST API and the event
feed (``Client``), how a program finds its server and token (``discover``),
TLS trust, and the helpers every front end shares: continuation trees,
running tasks after others, and words for what the API returns.

The ``banyan`` CLI and the TUI are front ends built on this package; it
never imports either of them::

    from banyan.client import Client, discover

    async with Client(discover()) as client:
        task_id = (await client.submit({"command": "echo hi", "state": "available"}))["_id"]
"""

from banyan.client.discovery import Connection, add_connection_options, client_file, discover
from banyan.client.http import RECONNECT_MAX_S, Client, check_tls
from banyan.client.linking import link_after
from banyan.client.tls import client_context, unreachable
from banyan.client.trees import descendants, fetch_many, walk_tree

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
