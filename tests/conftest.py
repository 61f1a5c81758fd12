"""Fixtures shared by every test: real etcd members started on free loopback ports.

The session's etcd (``etcd_cluster``) serves TLS, verifies client certificates and
has etcd's auth on, as users run it; tests reach it through the cluster:
``etcd_cluster.connect(prefix)`` in process, ``client_env()`` (``KUBELESS_ENDPOINTS``
and ``KUBELESS_CERT_PATH``) or ``client_flags()`` (``--endpoints --cacert --cert
--key``) for a subprocess, an identity per common name (``admin:tests`` unless told:
``node:<id>`` for an agent, ``manager:<id>`` for controllers), each admitted as its
etcd user with the permission table's roles as it is first presented: a node's role
covers its keys under the prefix named with it (``client_flags(f"node:{id}", prefix)``),
so an agent reaches only what a node may, and registering its Node is the admin's (as
the join endpoint does). A plain http:// etcd is asked for by name (``plain_etcd``):
what must keep working plain, and plain-http behaviour; a TLS etcd without auth by
``EtcdCluster(tls=True, auth=False)``. No test inherits a ``KUBELESS_CERT_PATH`` the
developer exported.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from types import FrameType

import pytest

from kubeless import store
from tests.support.etcd_server import EtcdCluster

_prefixes = itertools.count()


def _dump_asyncio_tasks(signum: int, frame: FrameType | None) -> None:
    """``kill -USR1 <pytest pid>``: print every task of the running event loop (a hung test)."""
    loop = asyncio._get_running_loop()
    tasks = asyncio.all_tasks(loop) if loop is not None else set()
    print(f"\n--- {len(tasks)} asyncio tasks ---", file=sys.stderr)
    for task in tasks:
        task.print_stack(limit=8, file=sys.stderr)
    sys.stderr.flush()


signal.signal(signal.SIGUSR1, _dump_asyncio_tasks)
os.environ.pop("KUBELESS_CERT_PATH", None)  # the developer's own cluster's, never the tests'
# Agents the tests start in this host's own network namespace (kubeless-agent, init, join,
# up) relay in userspace: the kernel path would leave an nftables table per node in the
# host's ruleset (a graceful stop keeps it, by design). The kernel path is tested where it
# belongs: in network namespaces of the tests' own (test_mesh_kernel, the e2e cluster), and
# in the docker plane that asks for it and removes its tables.
os.environ["KUBELESS_MESH_MODE"] = "userspace"
# Controllers the tests start (directly, or through init/join/up) serve no dashboard unless
# a test asks for one on a port of its own: the default port may be a user's `kubeless up`.
os.environ["KUBELESS_DASHBOARD_PORT"] = "0"


def _kernel_mesh_tables() -> set[str] | None:
    """The kernel mesh tables in this host's ruleset (None: nft cannot say)."""
    try:
        out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return {line.split()[-1] for line in out.stdout.splitlines()
            if line.startswith("table inet kubeless_")}


@pytest.fixture(scope="session", autouse=True)
def no_kernel_mesh_table_left() -> Iterator[None]:
    """Whatever the tests do, this host's ruleset ends as it began: a kernel mesh table
    left behind would catch later connections to its ports on every loopback address."""
    before = _kernel_mesh_tables()
    yield
    after = _kernel_mesh_tables()
    if before is not None and after is not None and after - before:
        pytest.fail(f"tests left kernel mesh tables in this host's ruleset: "
                    f"{', '.join(sorted(after - before))}")


@pytest.fixture(scope="session")
def etcd_cluster() -> Iterator[EtcdCluster]:
    """One single-member etcd shared by the session, over TLS with client certificates
    (a CA of its own) and etcd's auth on; tests isolate by prefix."""
    cluster = EtcdCluster(1, tls=True, auth=True).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def plain_etcd() -> Iterator[EtcdCluster]:
    """A single-member plain http:// etcd without auth shared by the session: for what
    must keep working plain (the CLI and daemons on their own, hollow clusters) and
    tests of plain-http behaviour. Asked for by name only."""
    cluster = EtcdCluster(1).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def own_etcd() -> Iterator[EtcdCluster]:
    """A single-member TLS etcd with auth of the test's own, for tests that stop or
    compact it."""
    cluster = EtcdCluster(1, tls=True, auth=True).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts: ended after it (SIGTERM, then SIGKILL after 10 s)."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def prefix() -> str:
    return f"/kubeless-test-{next(_prefixes)}"


@pytest.fixture
async def rstore(etcd_cluster: EtcdCluster, prefix: str) -> AsyncIterator[store.ResourceStore]:
    s = etcd_cluster.connect(prefix)
    yield s
    await s.etcd.close()
