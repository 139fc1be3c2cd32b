"""The application factory: settings in, a ready ``web.Application`` out.
The store opens and closes with the app (``cleanup_ctx``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from banyan.supervise import SideTasks
from server import dbwatch, retention
from server.auth import AUTH, Authenticator
from server.errors import eve_errors
from server.feed import Feed
from server.gateway import Gateway
from server.hub import EventHub
from server.keys import FEED, GATEWAY, HUB, SETTINGS, STORE
from server.netlog import quiet_network_errors
from server.revocation import RevocationWatch
from server.settings import Settings
from server.stores import open_store
from server.stores.base import Store
from server.views import jobs, misc, openapi, stats, tasks, workers
from server.views.reasons import FIT_VIEW, FitView

# aiohttp's HTTP parser limits, named here on purpose (they are its defaults): a
# request line or a header over 8190 bytes, or over 128 headers, is refused
# before any view runs (400 or 431, from aiohttp, in plain text).
HTTP_LIMITS = {"max_line_size": 8190, "max_field_size": 8190, "max_headers": 128}


def create_app(settings: Settings, *, store: Store | None = None) -> web.Application:
    app = web.Application(
        middlewares=[eve_errors],
        client_max_size=settings.max_body_bytes,
        # Per connection, whoever runs the app (run_app, a test server): an idle
        # connection, or one still trickling a request's headers, is closed
        # after keepalive_timeout_s.
        handler_args={"keepalive_timeout": settings.keepalive_timeout_s, **HTTP_LIMITS},
    )
    app[SETTINGS] = settings
    the_store = store or open_store(settings)
    app[STORE] = the_store
    app[AUTH] = Authenticator(the_store, cache_s=settings.token_cache_s)
    app[FIT_VIEW] = FitView()
    hub = app[HUB] = EventHub(the_store)
    gateway = app[GATEWAY] = Gateway(the_store, settings, hub)
    feed = app[FEED] = Feed(
        the_store,
        hub,
        date_format=settings.date_format,
        buffer=settings.event_buffer,
        buffer_bytes=settings.event_buffer_bytes,
        send_timeout_s=settings.event_send_timeout_s,
    )

    # The server's own background loops: a failure stops the server (exit 70).
    side = SideTasks("server")

    async def store_lifetime(app: web.Application) -> AsyncIterator[None]:
        await the_store.open()
        await hub.start()
        await gateway.start()
        side.spawn(feed.prune(keep=settings.event_retention), name="prune-events")
        side.spawn(
            retention.prune_workers(the_store, retention_s=settings.worker_retention_s),
            name="prune-workers",
        )
        watch = RevocationWatch(
            the_store, app[AUTH], (gateway, feed), period_s=settings.revocation_check_s
        )
        side.spawn(watch.run(), name="revocation-watch")
        yield
        await side.close()
        await gateway.stop()
        await hub.stop()
        await the_store.close()

    async def close_worker_sockets(app: web.Application) -> None:
        # on_shutdown runs before the server waits for open requests: without
        # this, the long-lived worker websockets would hold shutdown up.
        await gateway.stop()
        await feed.close_all()

    app.on_shutdown.append(close_worker_sockets)

    app.cleanup_ctx.append(quiet_network_errors)
    app.cleanup_ctx.append(store_lifetime)
    dbwatch.install(app, the_store)
    app.add_routes(tasks.routes)
    app.add_routes(misc.routes)
    app.add_routes(openapi.routes)
    app.add_routes(workers.routes)
    app.add_routes(stats.routes)
    app.add_routes(jobs.routes)
    return app
