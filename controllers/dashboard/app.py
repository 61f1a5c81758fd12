"""The dashboard as one coroutine: the feed and the server, until cancelled."""

from __future__ import annotations

import logging

from controllers.dashboard import DEFAULT_ADDRESS, DEFAULT_PORT
from controllers.dashboard.feed import DashboardFeed
from controllers.dashboard.server import DashboardServer
from controllers.view import ClusterView

log = logging.getLogger(__name__)


async def serve(view: ClusterView, address: str = DEFAULT_ADDRESS,
                port: int = DEFAULT_PORT) -> None:
    """Serve the dashboard of ``view`` until cancelled (not at all when the address
    cannot be bound: said in the log, and the caller runs on)."""
    feed = DashboardFeed(view)
    server = DashboardServer(feed, address, port)
    try:
        await server.start()
    except OSError as err:
        log.warning("no dashboard: cannot listen on %s port %d: %s", address, port,
                    err.strerror or err)
        return
    log.info("dashboard: %s (read-only, no authentication)", server.url)
    try:
        await feed.run()
    finally:
        await server.close()
