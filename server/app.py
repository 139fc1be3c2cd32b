"""The application factory: settings in, a ready ``web.Application`` out.
The store opens and closes with the app (``cleanup_ctx``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from banyan.settings import Settings
from server.auth import AUTH, Authenticator
from server.errors import eve_errors
from server.keys import SETTINGS, STORE
from server.sqlite.store import SqliteStore
from server.store import Store
from server.views import misc, openapi, tasks


def create_app(settings: Settings, *, store: Store | None = None) -> web.Application:
    app = web.Application(middlewares=[eve_errors], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    the_store = store or SqliteStore(
        settings.db,
        synchronous=settings.synchronous.value,
        batch_max_ops=settings.commit_batch_max_ops,
        require_if_match=settings.require_if_match,
    )
    app[STORE] = the_store
    app[AUTH] = Authenticator(the_store, cache_s=settings.token_cache_s)

    async def store_lifetime(app: web.Application) -> AsyncIterator[None]:
        await the_store.open()
        yield
        await the_store.close()

    app.cleanup_ctx.append(store_lifetime)
    app.add_routes(tasks.routes)
    app.add_routes(misc.routes)
    app.add_routes(openapi.routes)
    return app
