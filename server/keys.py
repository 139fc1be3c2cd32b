"""Typed keys for what the application shares between views."""

from __future__ import annotations

from aiohttp import web

from server.auth import AUTH
from server.feed import Feed
from server.gateway import Gateway
from server.hub import EventHub
from server.settings import Settings
from server.stores.base import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
HUB = web.AppKey("hub", EventHub)
GATEWAY = web.AppKey("gateway", Gateway)
FEED = web.AppKey("feed", Feed)
__all__ = ["AUTH", "FEED", "GATEWAY", "HUB", "SETTINGS", "STORE"]
