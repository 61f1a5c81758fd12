"""Which local address to listen on for a node's advertise address (one socket probe)."""

from __future__ import annotations

import logging
import socket

log = logging.getLogger(__name__)


def bind_address(advertise: str | None) -> str:
    """``advertise`` when this host owns it (a socket can bind it), else 0.0.0.0."""
    if not advertise or advertise == "0.0.0.0":
        return "0.0.0.0"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((advertise, 0))
    except OSError:
        log.warning("advertise address %s is not local; listening on 0.0.0.0", advertise)
        return "0.0.0.0"
    return advertise
