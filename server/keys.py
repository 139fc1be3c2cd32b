"""Typed keys for what the application shares between views."""

from __future__ import annotations

from aiohttp import web

from banyan.settings import Settings
from server.auth import AUTH
from server.store import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
__all__ = ["AUTH", "SETTINGS", "STORE"]
