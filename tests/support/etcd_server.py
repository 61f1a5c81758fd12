"""Real etcd members for tests: the launcher is ``kubeless.cluster.etcd_server``.

``EtcdCluster(n)`` starts n members of one cluster (n=1 for most tests) on free
loopback ports in a temp dir. Members can be stopped, killed and started again
with the same data dir, which is how tests break and heal the cluster on purpose.
The session's etcd serves TLS with client certificates, as users run it
(``EtcdCluster(tls=True)``); a plain one is asked for by name (conftest's
``plain_etcd``). Either is reached the same way: ``cluster.connect(prefix)``,
``cluster.client_env()``, ``cluster.client_flags()``, ``cluster.client_tls()``
(``TEST_ADMIN``'s identity unless another common name is given).
This module re-exports them and adds what only tests do: writing behind
kubeless's back.
"""

from __future__ import annotations

from kubeless.cluster.etcd_server import ETCD_BIN, TEST_ADMIN, EtcdCluster, Member, free_port

__all__ = ["ETCD_BIN", "EtcdCluster", "Member", "TEST_ADMIN", "free_port", "mark_cluster",
           "put_raw"]


def put_raw(cluster: EtcdCluster, key: str, value: bytes) -> None:
    """Write one value as a user of etcdctl would, behind kubeless's back (from sync code;
    etcdctl itself cannot put an empty value)."""
    import asyncio

    from kubeless.store import Put

    async def put() -> None:
        etcd = cluster.connect("/").etcd
        try:
            await etcd.txn([], [Put(key, value)])
        finally:
            await etcd.close()
    asyncio.run(put())


def mark_cluster(cluster: EtcdCluster, prefix: str) -> None:
    """Give a fresh test prefix a cluster record, so the CLI's writing commands do not
    warn that no cluster is there (tests that assert stderr line by line)."""
    put_raw(cluster, f"{prefix}/v1/cluster", b"{}")
