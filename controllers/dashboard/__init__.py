"""The read-only web dashboard of the controllers process: nodes, services, tasks, events.

Every controllers replica may serve it (``kubeless-controllers --dashboard-port``,
default 8484, or ``KUBELESS_DASHBOARD_PORT``, on ``--dashboard-address``
127.0.0.1; port 0: none): it only reads the process's ``ClusterView`` and the
Events (``feed``), turns them into rows (``model``, pure) and serves a plain
HTML page that a server-sent-events stream keeps current (``server``; the
page's files in ``static/``, no build step). ``app.serve`` runs it all until
cancelled; a port it cannot bind is logged, and the controllers run on without
a dashboard.

This module only holds the settings, so ``kubeless up`` reads them without
importing the rest.
"""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_PORT = 8484
DEFAULT_ADDRESS = "127.0.0.1"
# The port's default for every process that reads it (the controllers, ``kubeless up``):
# the tests set it to 0, so the controllers they start leave a user's port alone.
PORT_ENV = "KUBELESS_DASHBOARD_PORT"


def port_from_env(environ: Mapping[str, str]) -> int:
    """``KUBELESS_DASHBOARD_PORT`` when it is a number, else ``DEFAULT_PORT``."""
    value = environ.get(PORT_ENV, "")
    return int(value) if value.isdigit() else DEFAULT_PORT
