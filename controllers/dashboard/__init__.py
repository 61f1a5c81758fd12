"""The read-only web dashboard of the controllers process: nodes, services, tasks, events.

Every controllers replica may serve it (``kubeless-controllers --dashboard-port``,
default 8484 on ``--dashboard-address`` 127.0.0.1; port 0: none): it only reads
the process's ``ClusterView`` and the Events (``feed``), turns them into rows
(``model``, pure) and serves a plain HTML page that a server-sent-events stream
keeps current (``server``; the page's files in ``static/``, no build step).
``serve`` runs it all until cancelled; a port it cannot bind is logged, and the
controllers run on without a dashboard.
"""

from __future__ import annotations

import logging

from controllers.dashboard.feed import DashboardFeed
from controllers.dashboard.server import DEFAULT_ADDRESS, DEFAULT_PORT, DashboardServer
from controllers.view import ClusterView

__all__ = ["DEFAULT_ADDRESS", "DEFAULT_PORT", "DashboardFeed", "DashboardServer", "serve"]

log = logging.getLogger(__name__)


async def serve(view: ClusterView, address: str = DEFAULT_ADDRESS,
                port: int = DEFAULT_PORT) -> None:
    """Serve the dashboard of ``view`` until cancelled (not at all when the address
    cannot be bound: said in the log)."""
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
