"""TLS to a node's own servers (task logs; later exec): both ends, and what a failure means.

    ServerTls          what a node's server presents and trusts: its certificate and key,
                       and the cluster CA its clients' certificates must be signed by
    choose_server_tls  the agent's decision: explicit --server-cert/--server-key/--client-ca
                       win; else the agent's own identity when its certificate has server
                       usage (a joined node's ``tls/``); else plain (pure)
    server_context     the server's ``ssl`` context: client certificates REQUIRED
    reload_server_cert a renewed certificate into that same context: new handshakes
                       present it, connections already made go on
    client_context     the CLI's: verifies the node's certificate against the CA and the
                       node's address, presents the user's certificate
    allowed_client     a verified client's common name is a kubeless identity
    failure_kind       what an ``ssl`` error on the client says went wrong (pure)
    describe           that failure as one sentence naming the node, file or flag to fix

A node's server is not etcd: there is no proxy in between, so the stdlib
``ssl`` module does all of it and ``cryptography`` is imported only to read a
certificate's usages (``server_usage``), at agent start. An anonymous client
gets nothing: the handshake fails before a byte of HTTP is read. With TLS 1.3
the client only learns its certificate was refused on its first read (the
server's alert), so ``failure_kind`` reads the alerts as well as the
verification codes.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from kubeless.store.errors import TlsError
from kubeless.store.tls import CERT_PATH_ENV, TlsConfig

from .identities import IdentityError, parse_identity

UNKNOWN_CA, EXPIRED, WRONG_HOST, REFUSED = "unknown-ca", "expired", "wrong-host", "refused"
# OpenSSL's verification codes for the node's certificate, checked by us (any other code:
# its CA is not ours); any other failure is the node refusing our certificate.
_VERIFY_CODES = {9: EXPIRED, 10: EXPIRED, 62: WRONG_HOST, 64: WRONG_HOST}


@dataclass(frozen=True)
class ServerTls:
    """What a node's TLS server presents (``cert``, ``key``) and trusts (``client_ca``)."""

    cert: Path
    key: Path
    client_ca: Path


def choose_server_tls(cert: str | None, key: str | None, client_ca: str | None,
                      identity: TlsConfig | None, identity_serves: bool) -> ServerTls | None:
    """The server identity of a node's servers: the explicit flags (``--client-ca``
    defaulting to the identity's CA), else the agent's identity when its certificate has
    server usage (``identity_serves``), else None (plain HTTP); ``TlsError`` for flags
    that cannot make one."""
    ca = client_ca or (str(identity.cacert) if identity and identity.cacert else None)
    if cert or key or client_ca:
        if not (cert and key):
            missing = "--server-key" if cert else "--server-cert"
            raise TlsError(f"a server certificate needs its key and a key its certificate: "
                           f"{missing} is missing")
        if ca is None:
            raise TlsError("serving over TLS needs the CA that signs the clients' "
                           "certificates: give --client-ca (or --cacert)")
        return ServerTls(Path(cert), Path(key), Path(ca))
    if identity is None or not identity_serves or identity.cert is None \
            or identity.key is None or identity.cacert is None:
        return None
    return ServerTls(identity.cert, identity.key, identity.cacert)


def server_usage(cert: Path) -> bool:
    """Whether the certificate in ``cert`` may serve (server usage, or no usage stated);
    False when it cannot be read (the agent then serves plain, as without one)."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    try:
        certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    except (OSError, ValueError):
        return False
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ExtendedKeyUsageOID.SERVER_AUTH in list(usages)


def server_context(tls: ServerTls) -> ssl.SSLContext:
    """The server's context: our certificate, and client certificates REQUIRED, signed by
    ``client_ca``; ``TlsError`` naming a file that cannot be used."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    _load_ca(context, tls.client_ca, "the client CA certificate")
    _load_pair(context, tls.cert, tls.key, "the server certificate")
    return context


def reload_server_cert(context: ssl.SSLContext, tls: ServerTls) -> None:
    """Load ``tls``'s certificate and key (renewed) into ``context`` again: new
    handshakes present them; ``TlsError`` (the old pair stays) when they cannot be."""
    _load_pair(context, tls.cert, tls.key, "the renewed server certificate")


def client_context(tls: TlsConfig | None, node: str) -> ssl.SSLContext:
    """The CLI's context for node ``node``'s servers: the CA and the user's certificate
    (``TlsError`` in one sentence when they are missing or cannot be used)."""
    if tls is None or tls.cert is None or tls.key is None:
        raise TlsError(f"the logs of node {node} are served over TLS: give --cert/--key or "
                       f"{CERT_PATH_ENV}")
    if tls.cacert is None:
        raise TlsError(f"the logs of node {node} are served over TLS: give --cacert (the "
                       f"cluster CA) or {CERT_PATH_ENV}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the host and the chain
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_ca(context, tls.cacert, "the CA certificate")
    _load_pair(context, tls.cert, tls.key, "the client certificate")
    return context


def allowed_client(common_name: str | None) -> bool:
    """A verified client may read when its certificate names a kubeless identity
    (``node:``, ``manager:``, ``admin:``): not etcd's own certificates, which the
    cluster CA signs too."""
    if not common_name:
        return False
    try:
        parse_identity(common_name)
    except IdentityError:
        return False
    return True


def peer_common_name(peercert: object) -> str | None:
    """The subject common name in ``SSLSocket.getpeercert()``'s dict, or None."""
    if not isinstance(peercert, dict):
        return None
    for rdn in peercert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None


def failure_kind(reason: str | None, verify_code: int | None) -> str:
    """What went wrong, from an ``ssl.SSLError``'s ``reason`` and (for a certificate the
    client could not verify) its ``verify_code``: the node's certificate is from another
    CA, expired or for another host; or the node refused ours."""
    if verify_code is not None:
        return _VERIFY_CODES.get(verify_code, UNKNOWN_CA)
    if "CERTIFICATE_VERIFY_FAILED" in (reason or "").upper():
        return UNKNOWN_CA
    return REFUSED  # the node's alert (certificate required, bad, unknown CA), or its hangup


def describe(kind: str, node: str, where: str, tls: TlsConfig | None) -> str:
    """One sentence for a failed TLS connection to node ``node``'s server at ``where``."""
    cacert = tls.cacert if tls is not None else None
    if kind == WRONG_HOST:
        return f"TLS: node {node}'s certificate at {where} is not valid for its address"
    if kind == EXPIRED:
        return f"TLS: node {node}'s certificate at {where} has expired or is not valid yet"
    if kind == UNKNOWN_CA:
        return (f"TLS: node {node}'s certificate at {where} is not signed by the CA in "
                f"{cacert} (unknown CA)")
    cert = tls.cert if tls is not None else None
    return (f"TLS: node {node} at {where} refused the client certificate {cert} (not signed "
            f"by the cluster CA, expired, or not a kubeless identity)")


def _load_ca(context: ssl.SSLContext, path: Path, what: str) -> None:
    try:
        context.load_verify_locations(cafile=str(path))
    except FileNotFoundError as err:
        raise TlsError(f"cannot read {what} {path}: {err.strerror}") from None
    except (ssl.SSLError, OSError, ValueError) as err:
        raise TlsError(f"{what} {path} cannot be used: {_reason(err)}") from None


def _load_pair(context: ssl.SSLContext, cert: Path, key: Path, what: str) -> None:
    try:
        context.load_cert_chain(str(cert), str(key))
    except FileNotFoundError as err:
        raise TlsError(f"cannot read {what} {err.filename or cert}: {err.strerror}") from None
    except (ssl.SSLError, OSError, ValueError) as err:
        raise TlsError(f"{what} {cert} and key {key} are not a PEM certificate and its "
                       f"key: {_reason(err)}") from None


def _reason(err: Exception) -> str:
    reason = getattr(err, "reason", None) or getattr(err, "strerror", None)
    return str(reason or err).splitlines()[0]
