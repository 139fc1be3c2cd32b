"""What the server logs when a client goes away mid-request (issue 15,
item 5): a connection reset, e.g. during a websocket upgrade, is one WARNING
line without a traceback, not an "unexpected error"."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from server.app import create_app
from server.settings import Settings


async def test_a_connection_reset_is_one_warning_line(
    aiohttp_client: Callable[..., Any], settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async def resets(request: web.Request) -> web.StreamResponse:
        # What WebSocketResponse.prepare raises when the client reset the
        # connection while the server was still checking its token.
        raise ConnectionResetError("Cannot write to closing transport")

    app = create_app(settings)
    app.router.add_get("/reset-probe", resets)
    client = await aiohttp_client(app)
    caplog.set_level(logging.INFO)
    async with client.get("/reset-probe") as resp:
        await resp.read()
    mine = [r for r in caplog.records if r.name.startswith("server")]
    assert len(mine) == 1, [r.getMessage() for r in mine]
    assert mine[0].levelno == logging.WARNING and mine[0].exc_info is None
    assert "GET /reset-probe" in mine[0].getMessage()
    assert "went away during GET /reset-probe: Cannot write to closing transport" in (
        mine[0].getMessage()
    )
