"""The cluster's certificates, made with the ``cryptography`` package.

    CA                 the cluster CA: an EC P-256 key and a self-signed certificate;
                       made, saved (``ca.key`` mode 0600, ``ca.crt``), loaded; it signs
    Profile            what the CA puts in a certificate it signs: common name, hosts
                       (IP addresses and DNS names, as SANs), client and/or server
                       usage, a lifetime in seconds
    new_key, make_csr  what a holder makes on its own side: a key that never leaves it,
                       and a certificate request carrying its public key
    cert_info          a certificate's common name, hosts and validity, read back;
                       cert_usages, csr_common_name, same_public_key likewise
    write_cert_dir     an identity in Docker's DOCKER_CERT_PATH layout: ``ca.pem``,
                       ``cert.pem``, ``key.pem`` (mode 0600); ``write_pair`` replaces
                       a certificate and its key so that a crash never leaves a
                       mismatched pair (``finish_pending_pair`` completes it)
    issue_etcd_certs   etcd's own server and peer certificates from the CA, as
                       kubeadm's ``certs`` phase makes them, always also valid for
                       the shared name ``etcd.kubeless`` (clients of members on
                       different hosts verify that one name: ``kubeless.store.tls``)

The CA decides who a certificate names: ``CA.sign`` takes the common name and
hosts from the ``Profile``, never from the request, whose only use is to carry
a public key its holder proves it has (the request's signature). Common names
are ``kubeless.cluster.identities``'; this module does not police them, so
etcd's own certificates can be named as etcd wants.

Importing ``cryptography`` costs about 17 MB of RSS on a bare interpreter (10 MB
beside grpc) and 70 ms: only the processes that make or sign keys import this.
Failures are ``CAError``s (``kubeless.cluster.errors``).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubeless.store.tls import ETCD_SHARED_NAME

from .ca import CERT_FILE, KEY_FILE
from .errors import CAError
from .record import DEFAULT_CERT_EXPIRY

if TYPE_CHECKING:
    from .etcd_server import EtcdTls

CA_LIFETIME = 20 * 365 * 86400.0  # Swarm's root CA: 20 years
DEFAULT_LIFETIME = DEFAULT_CERT_EXPIRY  # Swarm's node certificates: 90 days
BACKDATE = 60.0  # seconds a new certificate is valid before it is made (clock skew)
BACKDATE_SHARE = 0.1  # at most this share of a short lifetime (renewal points stay in it)
USAGES = frozenset({"client", "server"})

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class Profile:
    """What the CA writes into a certificate it signs."""

    common_name: str
    hosts: tuple[str, ...] = ()  # IP addresses and DNS names the holder serves on
    usages: frozenset[str] = field(default_factory=lambda: frozenset({"client"}))
    lifetime: float = DEFAULT_LIFETIME  # seconds

    def __post_init__(self) -> None:
        if not self.common_name:
            raise CAError("a certificate needs a common name")
        if not self.usages or not self.usages <= USAGES:
            raise CAError(f"certificate usages {sorted(self.usages)}: use client and/or server")
        if self.lifetime <= 0:
            raise CAError(f"a certificate's lifetime must be positive, not {self.lifetime}")


@dataclass(frozen=True)
class CertInfo:
    """What a certificate says, read back."""

    common_name: str
    hosts: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime
    is_ca: bool
    serial: int = 0

    def expired(self, now: datetime.datetime | None = None) -> bool:
        return (now or _now()) >= self.not_after


def backdate(lifetime: float) -> float:
    """Seconds a certificate of ``lifetime`` is valid before it is made: a minute for
    clock skew, at most a tenth of a short lifetime (a certificate of seconds would
    otherwise spend most of its validity in the past, before its renewal point)."""
    return min(BACKDATE, lifetime * BACKDATE_SHARE)


# -- keys and requests (the holder's side) ------------------------------------------

def new_key() -> ec.EllipticCurvePrivateKey:
    """A new EC P-256 key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> str:
    """The key as unencrypted PKCS#8 PEM (what ``openssl req -nodes`` writes)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def load_key(pem: str | bytes) -> PrivateKey:
    """A PEM private key; ``CAError`` when it is not an EC or RSA key."""
    try:
        key = serialization.load_pem_private_key(_bytes(pem), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise CAError(f"not a PEM private key without a password: {err}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CAError(f"a {type(key).__name__} is not an EC or RSA key")
    return key


def make_csr(key: PrivateKey, common_name: str) -> str:
    """A certificate request for ``key``'s public key, naming ``common_name`` (a hint:
    the CA decides the name it signs)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


# -- the CA ---------------------------------------------------------------------------

@dataclass(frozen=True)
class CA:
    """The cluster CA: its key and self-signed certificate."""

    key: PrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @classmethod
    def make(cls, common_name: str, lifetime: float = CA_LIFETIME,
             now: datetime.datetime | None = None) -> CA:
        """A new CA: an EC P-256 key and a self-signed CA certificate."""
        key = new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        start = now or _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start - datetime.timedelta(seconds=backdate(lifetime)))
                .not_valid_after(start + datetime.timedelta(seconds=lifetime))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(_key_usage(sign_certs=True), critical=True)
                .add_extension(ski, critical=False)
                .sign(key, hashes.SHA256()))
        return cls(key, cert)

    @classmethod
    def load(cls, directory: Path) -> CA:
        """The CA saved in ``directory`` (``ca.key``, ``ca.crt``); ``CAError`` otherwise."""
        try:
            key_text = (directory / KEY_FILE).read_bytes()
            cert_text = (directory / CERT_FILE).read_bytes()
        except OSError as err:
            raise CAError(f"cannot read the cluster CA in {directory}: {err.strerror}: "
                          f"{err.filename}") from None
        return cls(load_key(key_text), load_cert(cert_text))

    def save(self, directory: Path) -> None:
        """Write ``ca.key`` (mode 0600 from its first byte) and ``ca.crt`` atomically."""
        directory.mkdir(parents=True, exist_ok=True)
        write_private(directory / KEY_FILE, key_pem(self.key))
        write_public(directory / CERT_FILE, self.cert_pem)

    def sign(self, csr_pem: str | bytes, profile: Profile,
             now: datetime.datetime | None = None) -> str:
        """The PEM certificate ``profile`` describes, for the request's public key;
        ``CAError`` when the request is not one, or its signature does not verify."""
        csr = _load_csr(csr_pem)
        start = now or _now()
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                                profile.common_name)]))
                   .issuer_name(self.cert.subject).public_key(csr.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(start - datetime.timedelta(
                       seconds=backdate(profile.lifetime)))
                   .not_valid_after(start + datetime.timedelta(seconds=profile.lifetime))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(_key_usage(sign_certs=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(_extended_usages(profile.usages)),
                                  critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self.cert.public_key()), critical=False))  # type: ignore[arg-type]
        if profile.hosts:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [_general_name(h) for h in profile.hosts]), critical=False)
        return builder.sign(self.key, hashes.SHA256()).public_bytes(
            serialization.Encoding.PEM).decode()

    def issue(self, profile: Profile, now: datetime.datetime | None = None) -> tuple[str, str]:
        """A new key and its signed certificate (key PEM, certificate PEM), for holders
        whose key is made where the CA is (etcd's own certificates, tests)."""
        key = new_key()
        return key_pem(key), self.sign(make_csr(key, profile.common_name), profile, now)


# -- reading certificates -----------------------------------------------------------

def load_cert(pem: str | bytes) -> x509.Certificate:
    """A PEM certificate; ``CAError`` when it is not one."""
    try:
        return x509.load_pem_x509_certificate(_bytes(pem))
    except ValueError as err:
        raise CAError(f"not a PEM certificate: {err}") from None


def csr_common_name(pem: str | bytes) -> str:
    """The common name a certificate request asks for ("" when it names none);
    ``CAError`` when it is not a request whose signature verifies."""
    names = _load_csr(pem).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def cert_usages(pem: str | bytes) -> frozenset[str]:
    """The usages (client, server) a certificate's extended key usage names."""
    try:
        eku = load_cert(pem).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return frozenset(USAGES)
    return frozenset(name for name, oid in (("server", ExtendedKeyUsageOID.SERVER_AUTH),
                                            ("client", ExtendedKeyUsageOID.CLIENT_AUTH))
                     if oid in list(eku))


def same_public_key(cert_pem: str | bytes, key_pem_text: str | bytes) -> bool:
    """Whether the certificate is for the key's public key."""
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(load_cert(cert_pem).public_key().public_bytes(der, spki)
                == load_key(key_pem_text).public_key().public_bytes(der, spki))


def cert_info(pem: str | bytes) -> CertInfo:
    """The common name, hosts and validity of a PEM certificate."""
    cert = load_cert(pem)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        hosts = tuple([str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
                      + san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        hosts = ()
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    return CertInfo(str(names[0].value) if names else "", hosts, cert.not_valid_before_utc,
                    cert.not_valid_after_utc, is_ca, cert.serial_number)


# -- files ----------------------------------------------------------------------------

CERT_DIR_FILES = ("ca.pem", "cert.pem", "key.pem")  # Docker's DOCKER_CERT_PATH layout


def write_cert_dir(directory: Path, ca_pem: str, cert_pem: str, key: str) -> Path:
    """An identity in ``directory``: ``ca.pem``, ``cert.pem`` and ``key.pem`` (0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_pair(directory, cert_pem, key)
    write_public(directory / CERT_DIR_FILES[0], ca_pem)
    return directory


PENDING = ".next"  # a new pair is written beside the old one first (write_pair)


def write_pair(directory: Path, cert_pem: str, key: str) -> None:
    """Replace ``cert.pem`` and ``key.pem`` so that a crash at any point leaves a matching
    pair or one ``finish_pending_pair`` completes: both new files are written complete
    (``*.next``) before either is renamed over its old one, the key first."""
    _, cert_file, key_file = CERT_DIR_FILES
    write_private(directory / (key_file + PENDING), key)
    write_public(directory / (cert_file + PENDING), cert_pem)
    os.replace(directory / (key_file + PENDING), directory / key_file)
    os.replace(directory / (cert_file + PENDING), directory / cert_file)


def finish_pending_pair(directory: Path) -> None:
    """Complete a ``write_pair`` a crash interrupted (before an identity is read): once the
    new certificate was written, both renames are done; before that, the old pair is
    intact and the lone new key is dropped."""
    _, cert_file, key_file = CERT_DIR_FILES
    cert_next, key_next = directory / (cert_file + PENDING), directory / (key_file + PENDING)
    if cert_next.is_file():
        if key_next.is_file():
            os.replace(key_next, directory / key_file)
        os.replace(cert_next, directory / cert_file)
    else:
        key_next.unlink(missing_ok=True)


def issue_identity(ca: CA, directory: Path, profile: Profile,
                   now: datetime.datetime | None = None) -> Path:
    """A new key and certificate for ``profile``, with the CA, written to ``directory``."""
    key, cert = ca.issue(profile, now)
    return write_cert_dir(directory, ca.cert_pem, cert, key)


def issue_etcd_certs(ca: CA, directory: Path, hosts: Iterable[str],
                     lifetime: float = DEFAULT_LIFETIME, client_cert_auth: bool = True) -> EtcdTls:
    """etcd's own certificates in ``directory``, as kubeadm's ``certs`` phase lays them
    out: ``ca.crt``, ``server.crt``/``.key`` (serving clients) and ``peer.crt``/``.key``
    (between members), both for server and client use on ``hosts`` and on
    ``ETCD_SHARED_NAME`` (the one name a channel to members on different hosts verifies;
    each member's certificate names its own addresses too, for a client of it alone)."""
    from .etcd_server import EtcdTls

    directory.mkdir(parents=True, exist_ok=True)
    hosts = etcd_hosts(hosts)
    write_public(directory / "ca.crt", ca.cert_pem)
    for part in ("server", "peer"):
        key, cert = ca.issue(Profile(f"etcd-{part}", hosts, USAGES, lifetime))
        write_private(directory / f"{part}.key", key)
        write_public(directory / f"{part}.crt", cert)
    return EtcdTls.in_dir(directory, client_cert_auth=client_cert_auth)


def etcd_hosts(hosts: Iterable[str]) -> tuple[str, ...]:
    """The SANs of an etcd certificate: ``hosts`` in order, then the shared name once."""
    listed = tuple(dict.fromkeys(hosts))
    return listed if ETCD_SHARED_NAME in listed else (*listed, ETCD_SHARED_NAME)


def write_private(path: Path, text: str) -> None:
    """Write a key: mode 0600 from creation, replacing ``path`` atomically."""
    _write(path, text, 0o600)


def write_public(path: Path, text: str) -> None:
    _write(path, text, 0o644)


def _write(path: Path, text: str, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- helpers ------------------------------------------------------------------------

def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _bytes(pem: str | bytes) -> bytes:
    return pem.encode() if isinstance(pem, str) else pem


def _load_csr(pem: str | bytes) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(_bytes(pem))
    except ValueError as err:
        raise CAError(f"not a PEM certificate request: {err}") from None
    try:
        valid = csr.is_signature_valid
    except (InvalidSignature, UnsupportedAlgorithm):
        valid = False
    if not valid:
        raise CAError("the certificate request's signature does not verify")
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in ("secp256r1",
                                                                         "secp384r1"):
        return csr
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
        return csr
    raise CAError("the certificate request's key is too weak: use EC P-256/P-384 or "
                  "RSA of 2048 bits or more")


def _key_usage(sign_certs: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not sign_certs, content_commitment=False,
                         key_encipherment=False, data_encipherment=False,
                         key_agreement=False, key_cert_sign=sign_certs, crl_sign=sign_certs,
                         encipher_only=False, decipher_only=False)


def _extended_usages(usages: frozenset[str]) -> list[x509.ObjectIdentifier]:
    return [oid for name, oid in (("server", ExtendedKeyUsageOID.SERVER_AUTH),
                                  ("client", ExtendedKeyUsageOID.CLIENT_AUTH))
            if name in usages]


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
