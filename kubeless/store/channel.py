"""Where the gRPC channel to etcd is built, and only here.

Endpoints are given as ``http://host:port`` or ``https://host:port``
(comma-separated, one scheme for all). All of them go into one channel: a
multi-address ``ipv4:`` target with round-robin load balancing, so a dead
member's subchannel is skipped and calls go to the live ones.
``open_channel`` is the one place that chooses insecure or secure: https://
endpoints need a ``TlsConfig`` (``kubeless.store.tls``: the CA, our
certificate and key), and the members' certificates are verified for the host
the endpoints name (the target itself, a list of addresses, names none).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import grpc.aio

from .tls import TlsConfig, check_schemes, credentials, server_name

DEFAULT_ENDPOINT = "http://127.0.0.1:2379"

# Keepalive pings find a dead member under a long-lived watch stream; etcd
# accepts pings every 5 s or slower by default (--grpc-keepalive-min-time).
_CHANNEL_OPTIONS = (
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.enable_retries", 0),
)


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


class BadEndpoint(ValueError):
    """An endpoint string that cannot be understood."""


def parse_endpoints(text: str | list[str] | tuple[str, ...]) -> tuple[Endpoint, ...]:
    """``"http://a:2379,http://b:2379"`` -> endpoints; a bare ``host:port`` means http."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    endpoints = tuple(_parse_one(p.strip()) for p in parts if p.strip())
    if not endpoints:
        raise BadEndpoint("no etcd endpoint given")
    return endpoints


def _parse_one(text: str) -> Endpoint:
    try:
        url = urlsplit(text if "://" in text else f"http://{text}")
    except ValueError as err:  # "Invalid IPv6 URL": an unclosed [
        raise BadEndpoint(f"etcd endpoint {text!r}: {err}") from None
    if url.scheme not in ("http", "https"):
        raise BadEndpoint(f"etcd endpoint {text!r}: scheme must be http or https")
    try:
        port = url.port or 2379
    except ValueError as err:
        raise BadEndpoint(f"etcd endpoint {text!r}: {err}") from None
    if not url.hostname:
        raise BadEndpoint(f"etcd endpoint {text!r}: no host")
    return Endpoint(url.scheme, url.hostname, port)


def _target(endpoints: tuple[Endpoint, ...]) -> str:
    """A gRPC target naming every member's address, resolved once here."""
    addresses: list[str] = []
    for ep in endpoints:
        try:
            infos = socket.getaddrinfo(ep.host, ep.port, type=socket.SOCK_STREAM)
        except socket.gaierror as err:
            raise BadEndpoint(f"etcd endpoint {ep}: cannot resolve {ep.host!r}: {err.strerror}") from None
        ipv4 = [i[4][0] for i in infos if i[0] == socket.AF_INET]
        ipv6 = [i[4][0] for i in infos if i[0] == socket.AF_INET6]
        if ipv4:
            addresses.append(f"ipv4:{ipv4[0]}:{ep.port}")
        elif ipv6:
            addresses.append(f"ipv6:[{ipv6[0]}]:{ep.port}")
    families = {a.split(":", 1)[0] for a in addresses}
    if len(families) == 1:
        family = families.pop()
        return f"{family}:" + ",".join(a.split(":", 1)[1] for a in addresses)
    # Mixed families cannot share one target; IPv4 wins (etcd listens there by default).
    return "ipv4:" + ",".join(a.split(":", 1)[1] for a in addresses if a.startswith("ipv4:"))


def open_channel(endpoints: tuple[Endpoint, ...],
                 tls: TlsConfig | None = None) -> grpc.aio.Channel:
    """The single gRPC channel every store call goes through: secure for https://
    endpoints (``TlsError`` when the TLS files cannot serve them), else insecure."""
    if not check_schemes(endpoints, tls):
        return grpc.aio.insecure_channel(_target(endpoints), options=_CHANNEL_OPTIONS)
    assert tls is not None  # check_schemes: https:// has a CA
    options = (*_CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", server_name(endpoints, tls)))
    return grpc.aio.secure_channel(_target(endpoints), credentials(tls), options=options)
