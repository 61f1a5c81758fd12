"""The PROXY protocol v1 header (HAProxy's spec, "2.1. Human-readable header format"),
which the userspace path sends to a backend first on ports that ask for it
(``proxyProtocol: v1``), so the backend learns the client's address: the relay's own
connection to the backend carries the node's address instead.

    PROXY TCP4 <client address> <published address> <client port> <published port>\\r\\n

``TCP6`` for IPv6; an IPv4 client seen through a dual-stack listener (``::ffff:a.b.c.d``)
is written as ``TCP4``; addresses of two families, or anything else, as
``PROXY UNKNOWN\\r\\n`` (the spec's answer when the proxy cannot tell). Pure: it takes
the addresses ``getpeername`` and ``getsockname`` return.
"""

from __future__ import annotations

import ipaddress
from typing import Any

UNKNOWN = b"PROXY UNKNOWN\r\n"


def _address(sockaddr: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])  # no IPv6 scope id
    except (ValueError, TypeError, IndexError):
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def header_v1(client: Any, published: Any) -> bytes:
    """The header for a connection from ``client`` to ``published`` (socket addresses)."""
    src, dst = _address(client), _address(published)
    if src is None or dst is None or src.version != dst.version:
        return UNKNOWN
    family = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {family} {src} {dst} {int(client[1])} {int(published[1])}\r\n".encode()
