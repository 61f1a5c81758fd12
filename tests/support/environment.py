"""The environment of a process a test starts "as a user would", with none of the
developer's or the session's ``KUBELESS_*`` settings, but those the session keeps
for every process it starts in this host's namespace: ``KUBELESS_MESH_MODE`` (see
tests/conftest.py: a kernel-path agent would leave its nftables table there) and
``KUBELESS_DASHBOARD_PORT`` (0: the controllers they start leave port 8484 alone)."""

from __future__ import annotations

import os

KEPT = ("KUBELESS_MESH_MODE", "KUBELESS_DASHBOARD_PORT")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("KUBELESS_") or k in KEPT}
