"""The cluster's root CA, made with Debian's ``openssl`` command.

``make_root_ca(dir)`` writes ``ca.key`` (an EC P-256 key, mode 0600) and
``ca.crt`` (a self-signed CA certificate, 20 years like Swarm's root CA)
into ``dir`` and returns the certificate's PEM. The key never leaves the
manager's state dir; only the certificate goes to etcd, and the join
tokens carry its digest.

Nothing signs node certificates yet: transport security (TLS to etcd,
per-node credentials) is a later issue. The CA exists now so tokens have
the digest a joining node checks, and so the cluster keeps one identity
when TLS arrives.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path

from .errors import CAError

OPENSSL = os.environ.get("KUBELESS_OPENSSL", "openssl")
KEY_FILE = "ca.key"
CERT_FILE = "ca.crt"
VALID_DAYS = 20 * 365


def make_root_ca(directory: Path, common_name: str) -> str:
    """Make the key and self-signed certificate in ``directory``; the certificate's PEM."""
    if shutil.which(OPENSSL) is None:
        raise CAError(f"`{OPENSSL}` is not installed: install Debian's openssl package")
    directory.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".ca-", dir=directory))  # mode 0700
    try:
        key, cert = work / KEY_FILE, work / CERT_FILE
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-sha256", "-days", str(VALID_DAYS), "-subj", f"/CN={common_name}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-keyout", str(key), "-out", str(cert))
        os.chmod(key, 0o600)
        pem = cert.read_text()
        cert_der(pem)  # it must parse
        os.replace(key, directory / KEY_FILE)
        os.replace(cert, directory / CERT_FILE)
        return pem
    finally:
        shutil.rmtree(work, ignore_errors=True)


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


def _openssl(*args: str) -> None:
    try:
        res = subprocess.run([OPENSSL, *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise CAError(f"openssl {args[0]} failed: {err}") from err
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise CAError(f"openssl {args[0]} failed (exit {res.returncode}): {last}")
