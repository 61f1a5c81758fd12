"""The cluster's root CA on disk, in the manager's state dir.

``make_root_ca(dir)`` writes ``ca.key`` (an EC P-256 key, mode 0600) and
``ca.crt`` (a self-signed CA certificate, 20 years like Swarm's root CA)
into ``dir`` and returns the certificate's PEM. The key never leaves the
manager's state dir; only the certificate goes to etcd, and the join
tokens carry its digest. The keys and certificates themselves are made by
``pki`` (the ``cryptography`` package); this module is what bootstrap needs
of them, and ``cert_der`` (the digest's input) needs only the standard library.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from .errors import CAError

KEY_FILE = "ca.key"
CERT_FILE = "ca.crt"


def make_root_ca(directory: Path, common_name: str) -> str:
    """Make the key and self-signed certificate in ``directory``; the certificate's PEM."""
    from .pki import CA

    ca = CA.make(common_name)
    try:
        ca.save(directory)
    except OSError as err:
        raise CAError(f"cannot write the cluster CA in {directory}: {err.strerror}") from err
    return ca.cert_pem


def remove_root_ca(directory: Path) -> None:
    """Forget a CA made for a cluster that was not created after all."""
    for name in (KEY_FILE, CERT_FILE):
        (directory / name).unlink(missing_ok=True)


def cert_der(pem: str) -> bytes:
    """The DER bytes of a PEM certificate; CAError when it is not one."""
    try:
        return ssl.PEM_cert_to_DER_cert(pem.strip() + "\n")
    except ValueError as err:
        raise CAError(f"the cluster's CA certificate is not a PEM certificate: {err}") from err
