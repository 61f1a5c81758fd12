"""TLS to etcd: the files a client presents, the name it verifies, what a failure means.

    TlsConfig          the CA certificate that signed etcd's, and our own certificate
                       and key (both or neither); from flags and a DOCKER_CERT_PATH-like
                       directory (``ca.pem``, ``cert.pem``, ``key.pem``)
    add_tls_arguments  the daemons' --cacert, --cert, --key (argparse); the CLI's
                       are click options with the same words
    check_schemes      http:// without TLS files, https:// with a CA; anything else
                       (mixed schemes, https without a CA, files for http) is refused
    check              all of the checks below too, up front (a daemon's flags)
    server_name        the name every member's certificate is verified against: the
                       endpoints' one host, else the shared ``ETCD_SHARED_NAME``
    credentials        the files read and checked (stdlib ``ssl``), as gRPC credentials
    handshake_failure  what gRPC's details say went wrong (pure, on the string)
    describe           that failure as one sentence naming the file or host to fix

gRPC reports a failed handshake as UNAVAILABLE "connections to all backends
failing; last error: ..." with OpenSSL's reason inside. When etcd refuses our
client certificate (none, expired, from another CA) the client only sees
"Unwrap failed (TSI_DATA_CORRUPTED)" after the server's alert; ``describe``
then reads our own certificate (with ``cryptography``, imported only then) to
say which it was. Certificates are always verified: the one gRPC option set
here, ``grpc.ssl_target_name_override``, names the host the certificates must
be valid for, since the channel's multi-address target has no host of its own.

One channel verifies one name, so members on different hosts (a 3-manager
cluster) are verified for a name they all hold: ``ETCD_SHARED_NAME``
(``etcd.kubeless``), which every etcd certificate kubeless issues
(``kubeless.cluster.pki.issue_etcd_certs``) carries as a DNS name beside the
member's own addresses. The name is never resolved, only verified: it
says "an etcd member of a cluster this CA vouches for", as a Kubernetes
service name does. Certificates made by someone else must hold it too (or
the endpoints name one host); a member whose certificate lacks it fails the
handshake, worded by ``describe`` as that name missing.
"""

from __future__ import annotations

import argparse
import datetime
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import TlsError

if TYPE_CHECKING:
    import grpc

    from .channel import Endpoint

CERT_PATH_ENV = "KUBELESS_CERT_PATH"
ETCD_SHARED_NAME = "etcd.kubeless"  # in every etcd certificate kubeless issues
CA_FILE, CERT_FILE, KEY_FILE = "ca.pem", "cert.pem", "key.pem"

# What the details of a failed handshake say, in gRPC 1.6x-1.8x's words (BoringSSL's).
UNKNOWN_CA, EXPIRED, WRONG_HOST, CLIENT_REFUSED = "unknown-ca", "expired", "wrong-host", "refused"
_HINTS: tuple[tuple[str, str], ...] = (
    ("hostname verification check failed", WRONG_HOST),
    ("certificate has expired", EXPIRED),
    ("certificate is not yet valid", EXPIRED),
    ("certificate_verify_failed", UNKNOWN_CA),
    ("unwrap failed (tsi_data_corrupted)", CLIENT_REFUSED),
    ("alert_bad_certificate", CLIENT_REFUSED),
    ("alert_certificate_required", CLIENT_REFUSED),
    ("alert_unknown_ca", CLIENT_REFUSED),
    ("alert_certificate_expired", CLIENT_REFUSED),
)


@dataclass(frozen=True)
class TlsConfig:
    """What a client needs for https:// etcd endpoints."""

    cacert: Path | None = None  # the CA that signed etcd's certificate
    cert: Path | None = None  # our certificate, when etcd asks for one
    key: Path | None = None
    server_name: str | None = None  # verify the members' certificates for this name

    @classmethod
    def from_options(cls, cacert: str | None = None, cert: str | None = None,
                     key: str | None = None, cert_path: str | None = None) -> TlsConfig | None:
        """Flags win, file by file, over ``cert_path``'s ``ca.pem``, ``cert.pem`` and
        ``key.pem`` (those present there); None when nothing is given."""
        found: dict[str, Path] = {}
        if cert_path:
            directory = Path(cert_path)
            found = {name: directory / file for name, file in
                     (("cacert", CA_FILE), ("cert", CERT_FILE), ("key", KEY_FILE))}
            if not directory.is_dir():
                raise TlsError(f"{CERT_PATH_ENV}={cert_path} is not a directory (it should "
                               f"hold {CA_FILE}, {CERT_FILE} and {KEY_FILE})")
        given = {name: Path(value) for name, value in
                 (("cacert", cacert), ("cert", cert), ("key", key)) if value}
        chosen = {**found, **given}
        if not chosen:
            return None
        return cls(chosen.get("cacert"), chosen.get("cert"), chosen.get("key"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str], cacert: str | None = None,
                 cert: str | None = None, key: str | None = None) -> TlsConfig | None:
        """``from_options`` with ``KUBELESS_CERT_PATH`` from ``environ``."""
        return cls.from_options(cacert, cert, key, environ.get(CERT_PATH_ENV) or None)


FLAG_HELP = {
    "cacert": "https:// endpoints: the CA certificate that signed etcd's "
              f"[default: ${CERT_PATH_ENV}/{CA_FILE}]",
    "cert": f"our client certificate [default: ${CERT_PATH_ENV}/{CERT_FILE}]",
    "key": f"our client certificate's key [default: ${CERT_PATH_ENV}/{KEY_FILE}]",
}


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """--cacert, --cert and --key (``TlsConfig.from_env`` reads them with the env)."""
    for name, text in FLAG_HELP.items():
        parser.add_argument(f"--{name}", metavar="FILE", help=text.replace("%", "%%"))


def check_schemes(endpoints: Sequence[Endpoint], tls: TlsConfig | None) -> bool:
    """Whether the channel is secure (all https://); ``TlsError`` for what cannot work."""
    schemes = {ep.scheme for ep in endpoints}
    if len(schemes) > 1:
        raise TlsError("the etcd endpoints mix http:// and https://: use one scheme for all")
    secure = schemes == {"https"}
    if secure and (tls is None or tls.cacert is None):
        raise TlsError("https:// etcd endpoints need the CA certificate that signed etcd's: "
                       f"give --cacert, or {CERT_PATH_ENV}=DIR holding {CA_FILE}")
    if not secure and tls is not None:
        raise TlsError(f"TLS files are given ({_given(tls)}) but the etcd endpoints are "
                       "http://: use https:// endpoints")
    if tls is not None and (tls.cert is None) != (tls.key is None):
        missing = "--key" if tls.key is None else "--cert"
        raise TlsError(f"a client certificate needs its key and a key its certificate: "
                       f"{missing} is missing")
    return secure


def check(endpoints: Sequence[Endpoint], tls: TlsConfig | None) -> None:
    """What ``open_channel`` would refuse, checked up front (a daemon's flags at start):
    the schemes, the name to verify, the files; ``TlsError`` naming what to fix."""
    if check_schemes(endpoints, tls):
        assert tls is not None
        server_name(endpoints, tls)
        credentials(tls)


def server_name(endpoints: Sequence[Endpoint], tls: TlsConfig) -> str:
    """The host every member's certificate must be valid for: the configured name, else
    the host all endpoints share, else (members on different hosts: one channel verifies
    one name) ``ETCD_SHARED_NAME``, which kubeless puts in every etcd certificate."""
    if tls.server_name:
        return tls.server_name
    hosts = {ep.host for ep in endpoints}
    return hosts.pop() if len(hosts) == 1 else ETCD_SHARED_NAME


def credentials(tls: TlsConfig) -> grpc.ChannelCredentials:
    """gRPC credentials from the files; ``TlsError`` naming a file that cannot be used."""
    import grpc

    if tls.cacert is None:
        raise TlsError("no CA certificate given for https:// endpoints (--cacert)")
    root = _read(tls.cacert, "the CA certificate")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(
            cadata=root.decode("ascii", errors="replace"))
    except (ssl.SSLError, ValueError) as err:
        raise TlsError(f"the CA certificate {tls.cacert} is not a PEM certificate: "
                       f"{_reason(err)}") from None
    if tls.cert is None or tls.key is None:
        return grpc.ssl_channel_credentials(root)
    chain = _read(tls.cert, "the client certificate")
    key = _read(tls.key, "the client key")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(str(tls.cert), str(tls.key))
    except (ssl.SSLError, ValueError) as err:
        raise TlsError(f"the client certificate {tls.cert} and key {tls.key} are not a PEM "
                       f"certificate and its key: {_reason(err)}") from None
    return grpc.ssl_channel_credentials(root, key, chain)


def handshake_failure(details: str) -> str | None:
    """What went wrong in a TLS handshake, from gRPC's details (None: not TLS)."""
    text = details.lower()
    for hint, kind in _HINTS:
        if hint in text:
            return kind
    return None


def describe(kind: str, tls: TlsConfig | None, where: str, name: str,
             now: datetime.datetime | None = None) -> str:
    """One sentence for a failed handshake with etcd at ``where``, verified for ``name``."""
    cacert = tls.cacert if tls is not None else None
    if kind == WRONG_HOST and name == ETCD_SHARED_NAME:
        return (f"TLS: etcd's certificate at {where} does not hold the name {name}, which "
                f"members on different hosts are verified for: issue etcd's certificates "
                f"from the cluster CA with kubeless (they hold it), or add the DNS name")
    if kind == WRONG_HOST:
        return (f"TLS: etcd's certificate at {where} is not valid for the host {name} (its "
                f"names and addresses do not include it)")
    if kind == EXPIRED:
        return f"TLS: etcd's certificate at {where} has expired or is not valid yet"
    if kind == UNKNOWN_CA:
        return (f"TLS: etcd's certificate at {where} is not signed by the CA in {cacert} "
                f"(unknown CA)")
    if tls is None or tls.cert is None:
        return (f"TLS: etcd at {where} requires a client certificate: give --cert and --key, "
                f"or {CERT_PATH_ENV}=DIR holding {CERT_FILE} and {KEY_FILE}")
    return f"TLS: etcd at {where} refused the client certificate {tls.cert}: " \
           f"{_why_refused(tls, now)}"


def _why_refused(tls: TlsConfig, now: datetime.datetime | None) -> str:
    """Our certificate read back: expired, or from a CA etcd does not trust."""
    from cryptography import x509

    assert tls.cert is not None
    try:
        cert = x509.load_pem_x509_certificate(tls.cert.read_bytes())
    except (OSError, ValueError):
        return "etcd does not trust it"
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if now >= cert.not_valid_after_utc:
        return f"it expired at {_utc(cert.not_valid_after_utc)}"
    if now < cert.not_valid_before_utc:
        return f"it is not valid before {_utc(cert.not_valid_before_utc)}"
    return f"etcd does not trust the CA that signed it ({cert.issuer.rfc4514_string()})"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise TlsError(f"cannot read {what} {path}: {err.strerror}") from None


def _reason(err: Exception) -> str:
    reason = getattr(err, "reason", None)
    return str(reason or err).splitlines()[0]


def _given(tls: TlsConfig) -> str:
    return ", ".join(f"{flag} {path}" for flag, path in
                     (("--cacert", tls.cacert), ("--cert", tls.cert), ("--key", tls.key)) if path)


def _utc(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
