"""The kubeless CLI as a user runs it, against a hollow cluster (``lab.hollow``).

``cli(c, *args)`` runs one command in a subprocess with the cluster's endpoints,
prefix and admin identity (``KUBELESS_NAMESPACE`` cleared); ``acli`` is the same
from async code (in a thread, so the test's controllers and agents go on), with
room for commands that wait for convergence (90 s).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from lab.hollow import ROOT, HollowCluster


def env_of(c: HollowCluster) -> dict[str, str]:
    env = {**os.environ, "KUBELESS_ENDPOINTS": c.endpoints, "KUBELESS_PREFIX": c.prefix,
           "PYTHONPATH": str(ROOT)}
    env.pop("KUBELESS_NAMESPACE", None)
    return env


def cli(c: HollowCluster, *args: str, stdin: str | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubeless_cli.main", *c.client_flags(), *args],
                          cwd=ROOT, capture_output=True, text=True, env=env_of(c),
                          timeout=timeout, input=stdin)


async def acli(c: HollowCluster, *args: str, stdin: str | None = None,
               timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, c, *args, stdin=stdin, timeout=timeout)
