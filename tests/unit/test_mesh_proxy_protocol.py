"""The PROXY protocol v1 header the userspace path sends on ports that ask for it."""

from __future__ import annotations

from typing import Any

import pytest

from kubeless_agent.mesh.proxy_protocol import UNKNOWN, header_v1


@pytest.mark.parametrize("client,published,header", [
    (("192.0.2.7", 51234), ("10.0.0.2", 8080),
     b"PROXY TCP4 192.0.2.7 10.0.0.2 51234 8080\r\n"),
    (("2001:db8::7", 51234, 0, 0), ("2001:db8::2", 8080, 0, 0),
     b"PROXY TCP6 2001:db8::7 2001:db8::2 51234 8080\r\n"),
    # a dual-stack listener sees IPv4 clients as mapped addresses: written as TCP4
    (("::ffff:192.0.2.7", 40000, 0, 0), ("::ffff:10.0.0.2", 80, 0, 0),
     b"PROXY TCP4 192.0.2.7 10.0.0.2 40000 80\r\n"),
    (("fe80::1%eth0", 40000, 0, 2), ("fe80::2%eth0", 80, 0, 2),  # the scope id is not sent
     b"PROXY TCP6 fe80::1 fe80::2 40000 80\r\n"),
])
def test_header(client: Any, published: Any, header: bytes) -> None:
    assert header_v1(client, published) == header
    assert len(header) <= 107  # the spec's longest line


@pytest.mark.parametrize("client,published", [
    (("192.0.2.7", 1), ("2001:db8::2", 80, 0, 0)),  # two families
    (("not an address", 1), ("10.0.0.2", 80)),
    ("/run/a.sock", "/run/b.sock"),  # not an inet address at all
])
def test_unknown_when_it_cannot_tell(client: Any, published: Any) -> None:
    assert header_v1(client, published) == UNKNOWN == b"PROXY UNKNOWN\r\n"
