"""The upstream resolvers the agent forwards to: the host's resolv.conf (pure parse).

``upstreams(text, own)`` reads ``nameserver ADDR`` lines (port 53; the
OpenBSD form ``nameserver [ADDR]:PORT`` gives another port) in order,
without repeats, and without the agent's own DNS addresses (``own``:
forwarding to ourselves would loop).

Loopback upstreams (systemd-resolved's 127.0.0.53, a local dnsmasq) are
KEPT: the agent runs on the host, in the host's network namespace, so it
reaches them (containers could not, which is why they ask the agent and
never the host's resolvers themselves). When the agent listens on
0.0.0.0:53 every loopback upstream on port 53 would be the agent itself
(nothing else can hold port 53 on a loopback address then), so those are
dropped.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

DEFAULT_PATH = "/etc/resolv.conf"
Upstream = tuple[str, int]


def _parse(value: str) -> Upstream | None:
    host, port = value, 53
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                return None
            port = int(rest[1:])
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
    return (host, port) if 0 < port < 65536 else None


def _is_own(upstream: Upstream, own: Collection[Upstream]) -> bool:
    if upstream in own:
        return True
    host, port = upstream
    wildcard = ("0.0.0.0", port) in own or ("::", port) in own
    try:
        return wildcard and ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def upstreams(text: str, own: Collection[Upstream] = ()) -> list[Upstream]:
    """The nameservers of a resolv.conf's text, in order, that are not the agent itself."""
    found: list[Upstream] = []
    for line in text.splitlines():
        parts = line.split("#")[0].split(";")[0].split()
        if len(parts) < 2 or parts[0] != "nameserver":
            continue
        upstream = _parse(parts[1])
        if upstream is not None and upstream not in found and not _is_own(upstream, own):
            found.append(upstream)
    return found


def show(upstream: Upstream) -> str:
    """``10.0.0.2:53``, ``[::1]:53``: an address and port as resolv.conf and logs say it."""
    host, port = upstream
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
