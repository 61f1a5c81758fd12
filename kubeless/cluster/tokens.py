"""Join tokens in Docker Swarm's format, and the hashes etcd keeps of them.

    SWMTKN-1-<CA digest>-<secret>

The CA digest is the sha256 of the root CA certificate (DER) written in
base 36, zero-padded to 50 characters; the secret is 128 random bits in
base 36, zero-padded to 25 characters (Swarm's lengths). The digest lets a
joining node tell at once that a token belongs to another cluster; the
secret is what grants a role. etcd stores only ``hash_secret(secret)``
(sha256, hex), so reading etcd does not let anyone join.

Pure functions: no I/O besides the system's random source.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from .errors import TokenMalformed

PREFIX = "SWMTKN"
VERSION = "1"
DIGEST_LEN = 50  # 256 bits in base 36
SECRET_LEN = 25  # 128 bits in base 36
SECRET_BITS = 128
ROLES = ("worker", "manager")

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_TOKEN_RE = re.compile(rf"^{PREFIX}-{VERSION}-([0-9a-z]{{{DIGEST_LEN}}})-([0-9a-z]{{{SECRET_LEN}}})$")


def base36(n: int, width: int) -> str:
    """``n`` in base 36, lowercase, zero-padded on the left to ``width``."""
    if n < 0:
        raise ValueError("base36 of a negative number")
    digits = []
    while n:
        n, rem = divmod(n, 36)
        digits.append(_ALPHABET[rem])
    return "".join(reversed(digits)).rjust(width, "0")


def ca_digest(cert_der: bytes) -> str:
    """The token's CA digest: sha256 of the DER certificate, 50 base-36 characters."""
    return base36(int.from_bytes(hashlib.sha256(cert_der).digest(), "big"), DIGEST_LEN)


def new_secret() -> str:
    """A fresh secret: 128 random bits, 25 base-36 characters."""
    return base36(secrets.randbits(SECRET_BITS), SECRET_LEN)


def hash_secret(secret: str) -> str:
    """What etcd keeps of a secret: its sha256, hex."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class JoinToken:
    digest: str
    secret: str

    def __str__(self) -> str:
        return f"{PREFIX}-{VERSION}-{self.digest}-{self.secret}"

    @property
    def secret_hash(self) -> str:
        return hash_secret(self.secret)

    def matches_hash(self, stored_hash: str) -> bool:
        """Constant-time comparison of this token's secret with a stored hash."""
        return hmac.compare_digest(self.secret_hash, stored_hash)


def new_token(digest: str) -> JoinToken:
    return JoinToken(digest, new_secret())


def parse_token(text: str) -> JoinToken:
    """A token from its text; TokenMalformed (never echoing the secret) when it is not one."""
    match = _TOKEN_RE.match(text.strip())
    if match is None:
        raise TokenMalformed(
            f"the join token is malformed: expected {PREFIX}-{VERSION}-<{DIGEST_LEN} base-36 "
            f"characters>-<{SECRET_LEN} base-36 characters>, as `kubeless join-token` prints it")
    return JoinToken(match.group(1), match.group(2))
