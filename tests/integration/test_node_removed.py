"""A node removed while its agent runs (``kubeless node rm --force``, etcd's auth on).

etcd checks every write against the deleted user but not a lease keep-alive, so
``node rm`` also revokes the node's heartbeat lease: the node goes down at once and
the agent, refused at each put, stays up (no crash loop), saying why in one line
each time and asking ever more slowly (issue 15: a user revoked while connected
gets clear errors).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeless.cluster import access
from lab.waiting import hold, until
from tests.support.builders import node as node_resource
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration

NODE = "rm-live"


@pytest.fixture(scope="module")
def auth_etcd() -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(1, tls=True, auth=True).start()
    yield cluster
    cluster.stop()


async def test_a_node_removed_while_its_agent_runs_goes_down_and_its_agent_stays_up(
        auth_etcd: EtcdCluster, prefix: str, tmp_path: Path,
        procs: list[subprocess.Popen[bytes]]) -> None:
    admin = auth_etcd.connect(prefix)
    try:
        await access.admit_node(admin.etcd, admin.keys, NODE, "worker")  # as a join does
        await admin.create(node_resource(NODE))
        log = tmp_path / "agent.log"
        with open(log, "wb") as out:
            agent = subprocess.Popen(
                [sys.executable, "-m", "kubeless_agent",
                 *auth_etcd.client_flags(f"node:{NODE}", prefix),
                 "--prefix", prefix, "--runtime", "fake", "--node-name", NODE, "--no-mesh",
                 "--dns-addr", "none", "--heartbeat-ttl", "2", "--log-level", "INFO"],
                stdout=out, stderr=subprocess.STDOUT)
        procs.append(agent)

        async def heartbeat() -> bool:
            kv, _ = await admin.etcd.get(admin.keys.heartbeat(NODE))
            return kv is not None
        await until(heartbeat, 30, "the agent's heartbeat")

        async def down() -> bool:
            return not await heartbeat()

        removed = subprocess.run([sys.executable, "-m", "kubeless_cli.main",
                                  *auth_etcd.client_flags(), "--prefix", prefix,
                                  "node", "rm", "--force", NODE],
                                 capture_output=True, text=True, timeout=60)
        assert removed.returncode == 0, removed.stderr
        await until(down, 10, "the removed node's heartbeat gone")
        await hold(6, lambda: agent.poll() is None and down(), "the agent up, the node down")
        lines = log.read_text().splitlines()
        refused = [line for line in lines if "putting heartbeats" in line]
        assert refused and all("permission denied" in line for line in refused), lines
        assert len(refused) <= 5, "refusals slow down (2 s, 4 s, 8 s ...), not one a second"
        assert not any("Traceback" in line for line in lines)
    finally:
        await admin.etcd.close()

