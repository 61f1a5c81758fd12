"""A cluster record holding a secrets key under a test's prefix, as init and up write it.

``give_secrets_key`` makes a fresh CA key, derives the cluster's secrets key from it
(``sealing.cluster_secrets_key``, as every manager does) and puts its public half as
``secretsKey`` into ``<prefix>/v1/cluster`` (creating the record, or adding the field
to the one there, such as ``mark_cluster``'s ``{}``), unless the record has one
already. It returns the private half, so a test can open what was sealed to it.
"""

from __future__ import annotations

import asyncio

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from kubeless.cluster import sealing
from kubeless.cluster.etcd_server import EtcdCluster
from kubeless.store import Compare, Put
from kubeless.store.codec import decode, encode_yaml


def give_secrets_key(cluster: EtcdCluster, prefix: str) -> X25519PrivateKey | None:
    """The private secrets key now in the record (None: it had one already)."""
    key = sealing.cluster_secrets_key(ec.generate_private_key(ec.SECP256R1()))

    async def put() -> bool:
        rstore = cluster.connect(prefix)
        try:
            record_key = rstore.keys.cluster()
            kvs, _ = await rstore.etcd.get_many([record_key])
            found = kvs.get(record_key)
            record = decode(record_key, found.value) if found is not None else None
            record = record if isinstance(record, dict) else {}
            if record.get("secretsKey"):
                return False
            record["secretsKey"] = sealing.public_text(key)
            revision = found.mod_revision if found is not None else 0
            res = await rstore.etcd.txn([Compare(record_key, "mod", "==", revision)],
                                        [Put(record_key, encode_yaml(record))])
            assert res.succeeded, f"{record_key} changed while a secrets key was given to it"
            return True
        finally:
            await rstore.etcd.close()

    return key if asyncio.run(put()) else None
