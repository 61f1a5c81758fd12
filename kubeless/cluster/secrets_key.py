"""The cluster's secrets key as a manager holds it: derived from the CA key, tied to its CA.

``sealing.cluster_secrets_key`` derives the X25519 key that every Secret in
``spec/secrets/`` is sealed to from the CA's private key, so every holder of
``ca.key`` holds it. This module is where a manager gets it: from the CA key
in memory (``of``: ``init`` and ``up`` writing the record) or from its PEM
file (``load``: ``kubeless-controllers --ca-key``), kept with the CA's public
key so a reader can check that a cluster record is this CA's
(``belongs_to``) before it writes the public half there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from . import sealing
from .errors import CAError
from .pki import PrivateKey, load_cert, load_key


@dataclass(frozen=True, repr=False)
class ClusterSecretsKey:
    private: X25519PrivateKey
    public: str  # sealing.public_text: what the record's ``secretsKey`` holds
    ca_public: bytes  # the CA's public key (DER) it was derived from

    def __repr__(self) -> str:  # never the private half, in a log line or a traceback
        return f"ClusterSecretsKey(public={self.public!r})"

    @property
    def key_id(self) -> str:
        return sealing.key_id(self.public)

    def belongs_to(self, ca_cert_pem: str) -> bool:
        """Whether ``ca_cert_pem`` (a record's ``caCertificate``) is the CA it comes from."""
        try:
            return _spki(load_cert(ca_cert_pem).public_key()) == self.ca_public
        except (CAError, ValueError, TypeError):
            return False


def of(ca_key: PrivateKey) -> ClusterSecretsKey:
    """The secrets key of the cluster whose CA key is ``ca_key``; CAError when it is not
    an EC key (every kubeless CA is: ``pki.new_key``)."""
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise CAError("the cluster CA key is not an EC key: no secrets key derives from it")
    private = sealing.cluster_secrets_key(ca_key)
    return ClusterSecretsKey(private, sealing.public_text(private), _spki(ca_key.public_key()))


def public_of(ca_key: PrivateKey) -> str:
    """The record's ``secretsKey`` for a CA key."""
    return of(ca_key).public


def load(path: str | Path) -> ClusterSecretsKey:
    """The secrets key from the CA key's PEM file; CAError naming the file otherwise."""
    try:
        text = Path(path).read_bytes()
    except OSError as err:
        raise CAError(f"cannot read the CA key {path}: {err.strerror}") from None
    try:
        return of(load_key(text))
    except CAError as err:
        raise CAError(f"the CA key {path}: {err}") from None


def _spki(public: object) -> bytes:
    der = serialization.Encoding.DER
    info = serialization.PublicFormat.SubjectPublicKeyInfo
    return bytes(public.public_bytes(der, info))  # type: ignore[attr-defined]
