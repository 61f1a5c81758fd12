"""The kubeless CLI as a user runs it: a subprocess on given endpoints and prefix.

``run_cli`` runs one command (``KUBELESS_NAMESPACE`` only when given) in the
environment ``env`` adds (an etcd cluster's ``client_env()``: its endpoints and,
over TLS, ``KUBELESS_CERT_PATH``); the ``kubeless`` fixture of
tests/integration/conftest.py binds it to the test's etcd and prefix;
``tls_flags`` are an identity's files as flags. ``svc`` writes a Service
manifest, ``write`` a file of documents, ``names`` lists the services by name.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import yaml

Run = Callable[..., subprocess.CompletedProcess[str]]


def run_cli(endpoints: str, prefix: str, *args: str, stdin: str | None = None,
            timeout: float = 30, namespace: str | None = None,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {}), "KUBELESS_ENDPOINTS": endpoints,
            "KUBELESS_PREFIX": prefix}
    full.pop("KUBELESS_NAMESPACE", None)
    if namespace is not None:
        full["KUBELESS_NAMESPACE"] = namespace
    return subprocess.run([sys.executable, "-m", "kubeless_cli.main", *args], input=stdin,
                          capture_output=True, text=True, env=full, timeout=timeout)


def tls_flags(identity: Path) -> list[str]:
    """--cacert, --cert and --key for an identity directory (ca.pem, cert.pem, key.pem)."""
    return ["--cacert", str(identity / "ca.pem"), "--cert", str(identity / "cert.pem"),
            "--key", str(identity / "key.pem")]


def svc(name: str, replicas: int = 1, image: str = "web:1", labels: str = "{}",
        ns: str | None = None) -> str:
    meta: dict[str, object] = {"name": name, "labels": yaml.safe_load(labels)}
    if ns:
        meta["namespace"] = ns
    return yaml.safe_dump({"apiVersion": "kubeless.io/v1", "kind": "Service", "metadata": meta,
                           "spec": {"replicas": replicas, "template": {"image": image}}},
                          sort_keys=False)


def write(path: Path, *docs: str) -> Path:
    path.write_text("---\n".join(docs))
    return path


def names(run: Run, *args: str) -> list[str]:
    res = run("get", "services", "-o", "name", *args)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()
