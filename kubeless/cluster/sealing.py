"""Sealed values: what secrets are in etcd, encrypted to a public key.

A value is *sealed* to an X25519 public key (an ECIES construction, as
libsodium's sealed boxes and HPKE do): a fresh X25519 key pair per value,
its shared secret with the recipient through HKDF-SHA256 into an AES-256-GCM
key, the value encrypted under a random nonce with a *context* as associated
data. Only the holder of the recipient's private key opens it, and only
under the same context, so a sealed value copied to another key (another
secret's name, another node's copy) does not open: names are bound in.

    version (1 byte) | ephemeral public key (32) | nonce (12) | ciphertext + tag

is stored as base64 text. Two recipients:

- the cluster: every Secret's value in ``spec/secrets/`` is sealed to the
  cluster's secrets key, whose public half is in the cluster record
  (``secretsKey``), so any admin can seal, while only a holder of the CA key
  (the managers) opens. The private half is derived from the CA key
  (``cluster_secrets_key``: HKDF with a label of its own, so the CA's
  signing key is never itself used for key agreement), so every manager
  holds it the moment it holds the CA key, with nothing more to hand out.
- a node: each agent process makes a key pair in memory at start
  (``new_private_key``) and advertises the public half in its heartbeat; the
  managers seal a copy of each secret a node's tasks use to it. The private
  half never touches a disk, so a copy in etcd opens only in the running
  agent it was sealed for.

``digest`` fingerprints a value so an apply can tell "unchanged" from
"changed" without opening it: scrypt with a random salt, slow on purpose,
since secrets are often short passwords and the digest sits in etcd beside
the sealed value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = 1
_HEADER = 1 + 32 + 12
_SEAL_INFO = b"kubeless seal v1"
_CLUSTER_KEY_INFO = b"kubeless cluster secrets key v1"
# scrypt's cost: about 16 MiB and tens of milliseconds per digest (once per apply).
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2 ** 14, 8, 1


class SealError(ValueError):
    """A sealed value that does not open: another key, another context, or damaged."""


def new_private_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def cluster_secrets_key(ca_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
                        ) -> X25519PrivateKey:
    """The cluster's secrets key, derived from its CA key (the same on every manager)."""
    secret = ca_key.private_bytes(serialization.Encoding.DER,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=_CLUSTER_KEY_INFO).derive(secret)
    return X25519PrivateKey.from_private_bytes(seed)


def public_text(key: X25519PrivateKey | X25519PublicKey) -> str:
    """A public key as base64 text (what the record and heartbeats hold)."""
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_public(text: str) -> X25519PublicKey:
    """The public key ``public_text`` wrote; SealError when it is not one."""
    try:
        raw = base64.b64decode(text, validate=True)
        return X25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError, TypeError) as err:
        raise SealError("not an X25519 public key") from err


def key_id(public: str) -> str:
    """A short fingerprint of a public key's text: which key a copy was sealed to."""
    return hashlib.sha256(public.encode()).hexdigest()[:16]


def _aead_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=_SEAL_INFO + ephemeral + recipient).derive(shared)


def seal(recipient: str, value: bytes, context: str) -> str:
    """``value`` sealed to the public key ``recipient`` (``public_text``) under ``context``."""
    public = load_public(recipient)
    ephemeral = X25519PrivateKey.generate()
    eph_raw = base64.b64decode(public_text(ephemeral))
    key = _aead_key(ephemeral.exchange(public), eph_raw, base64.b64decode(recipient))
    nonce = os.urandom(12)
    body = AESGCM(key).encrypt(nonce, value, context.encode())
    return base64.b64encode(bytes([VERSION]) + eph_raw + nonce + body).decode()


def unseal(private: X25519PrivateKey, sealed: str, context: str) -> bytes:
    """The value ``seal`` sealed to ``private``'s public key under ``context``."""
    try:
        blob = base64.b64decode(sealed, validate=True)
    except (binascii.Error, ValueError, TypeError) as err:
        raise SealError("a sealed value is not base64") from err
    if len(blob) < _HEADER + 16 or blob[0] != VERSION:
        raise SealError("a sealed value is damaged or of an unknown version")
    eph_raw, nonce, body = blob[1:33], blob[33:_HEADER], blob[_HEADER:]
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(eph_raw))
    except ValueError as err:
        raise SealError("a sealed value is damaged") from err
    key = _aead_key(shared, eph_raw, base64.b64decode(public_text(private)))
    try:
        return AESGCM(key).decrypt(nonce, body, context.encode())
    except InvalidTag as err:
        raise SealError("a sealed value does not open with this key and name") from err


def secret_context(namespace: str, name: str) -> str:
    """What a Secret's stored value is bound to."""
    return f"secret/{namespace}/{name}"


def copy_context(node: str, namespace: str, name: str) -> str:
    """What a node's copy of a Secret is bound to."""
    return f"node/{node}/secret/{namespace}/{name}"


def digest(value: bytes, salt: bytes | None = None) -> str:
    """``scrypt$<salt>$<hash>`` of ``value`` (a random salt unless given)."""
    salt = os.urandom(16) if salt is None else salt
    out = hashlib.scrypt(value, salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(out).decode()


def digest_matches(value: bytes, stored: str) -> bool:
    """Whether ``value`` is what ``stored`` (a ``digest``) was made from."""
    scheme, _, rest = stored.partition("$")
    salt_text, _, _ = rest.partition("$")
    if scheme != "scrypt" or not salt_text:
        return False
    try:
        salt = base64.b64decode(salt_text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(digest(value, salt), stored)
