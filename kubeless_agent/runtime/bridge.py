"""Where containers of Docker's default bridge reach the host: the bridge's gateway address.

Engines do not all say it the same way. Most report the gateway in the
network's IPAM config; Debian's docker.io 20.10 reports a Subnet and NO
Gateway there. ``bridge_gateway`` (pure) chooses, in order:

    1. the IPAM config's Gateway (with its Subnet);
    2. an IPv4 address of the bridge's interface (the network's option
       ``com.docker.network.bridge.name``, default ``docker0``) inside a
       configured subnet, else its first one: what the kernel says the
       host's address on the bridge is;
    3. the first host of the configured subnet (what Docker assigns the
       gateway when none is configured).

``interface_ipv4(name)`` reads an interface's address from the kernel
(``SIOCGIFADDR``, one ioctl: no subprocess, never blocks).
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_INTERFACE = "docker0"
INTERFACE_OPTION = "com.docker.network.bridge.name"
SIOCGIFADDR = 0x8915


@dataclass(frozen=True)
class Bridge:
    """The host's address on the bridge, the bridge's subnet, and how the address was found."""

    gateway: str
    subnet: str
    source: str  # "IPAM gateway", "address of docker0", "first host of 172.17.0.0/16"


def interface_name(network: Mapping[str, Any]) -> str:
    """The bridge's Linux interface (``docker0`` unless the network says another)."""
    return str((network.get("Options") or {}).get(INTERFACE_OPTION) or DEFAULT_INTERFACE)


def _subnets(network: Mapping[str, Any]) -> list[ipaddress.IPv4Network]:
    found = []
    for c in ((network.get("IPAM") or {}).get("Config")) or []:
        try:
            net = ipaddress.ip_network(str(c.get("Subnet") or ""), strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network):
            found.append(net)
    return found


def bridge_gateway(network: Mapping[str, Any], interface_addrs: Sequence[str]) -> Bridge | None:
    """The bridge's gateway from its inspect document and its interface's IPv4 addresses
    (``"172.17.0.1"`` or ``"172.17.0.1/16"``); None when nothing says where it is."""
    for c in ((network.get("IPAM") or {}).get("Config")) or []:
        if c.get("Gateway") and ":" not in str(c["Gateway"]):
            return Bridge(str(c["Gateway"]).split("/")[0], str(c.get("Subnet") or ""),
                          "IPAM gateway")
    subnets = _subnets(network)
    addrs = [ipaddress.IPv4Interface(a) for a in interface_addrs if _is_ipv4_interface(a)]
    name = interface_name(network)
    for net in subnets:
        for a in addrs:
            if a.ip in net:
                return Bridge(str(a.ip), str(net), f"address of {name}")
    if addrs:
        net = subnets[0] if subnets else addrs[0].network
        return Bridge(str(addrs[0].ip), str(net), f"address of {name}")
    for net in subnets:
        if net.num_addresses > 2:
            return Bridge(str(net.network_address + 1), str(net), f"first host of {net}")
    return None


def _is_ipv4_interface(text: str) -> bool:
    try:
        return ipaddress.ip_interface(text).version == 4
    except ValueError:
        return False


def interface_ipv4(name: str) -> list[str]:
    """The interface's (primary) IPv4 address, or [] when it has none or does not exist."""
    packed = struct.pack("256s", name.encode()[:15])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            raw = fcntl.ioctl(s.fileno(), SIOCGIFADDR, packed)
    except OSError:
        return []
    return [socket.inet_ntoa(raw[20:24])]
