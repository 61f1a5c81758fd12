"""The CLI on the e2e cluster, as a person runs it: on a host or in the root namespace,
with an identity of the cluster's or none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lab.cluster.harness import Cluster


def kubeless(cluster: Cluster, host: str | None, *args: str,
             cert_path: Path | None = None, cacert: Path | None = None
             ) -> subprocess.CompletedProcess[str]:
    """The CLI on the cluster (on ``host``, else in the root namespace) as the identity
    in ``cert_path`` (none: no KUBELESS_CERT_PATH at all), or with ``--cacert`` only."""
    env = {k: v for k, v in os.environ.items() if k != "KUBELESS_CERT_PATH"}
    env.update(KUBELESS_ENDPOINTS=cluster.endpoints, KUBELESS_PREFIX=cluster.prefix)
    if cert_path is not None:
        env["KUBELESS_CERT_PATH"] = str(cert_path)
    flags = ("--cacert", str(cacert)) if cacert is not None else ()
    cmd = (sys.executable, "-m", "kubeless_cli.main", *flags, *args)
    if host is not None:
        return cluster.run(host, *cmd, env=env)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def bare_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("KUBELESS_CERT_PATH", "KUBELESS_ENDPOINTS", "KUBELESS_PREFIX")}
