""""Nothing written": the whole etcd keyspace before and after a refused command.

etcd's global revision would say it in one number, but any other writer on the
session's shared etcd moves it too (a lease of an earlier test expiring is a
delete). So compare every key's mod revision instead: no key may be new or
rewritten, and a key may disappear only when it was attached to a lease.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass

from kubeless.cluster.etcd_server import EtcdCluster


@dataclass(frozen=True)
class Keyspace:
    mod: dict[str, int]  # key -> mod revision
    leased: frozenset[str]


def keyspace(cluster: EtcdCluster) -> Keyspace:
    out = subprocess.run(["/usr/bin/etcdctl", *cluster.client_flags(), "get", "", "--from-key",
                          "--keys-only", "-w", "json"], check=True, capture_output=True,
                         text=True, env={**os.environ, "ETCDCTL_API": "3"}).stdout
    kvs = json.loads(out).get("kvs") or []
    mod = {base64.b64decode(kv["key"]).decode(errors="replace"): int(kv["mod_revision"])
           for kv in kvs}
    leased = frozenset(base64.b64decode(kv["key"]).decode(errors="replace")
                       for kv in kvs if kv.get("lease"))
    return Keyspace(mod, leased)


def written(before: Keyspace, after: Keyspace) -> list[str]:
    """The keys a command wrote or deleted between two snapshots (lease expiry aside)."""
    changed = [k for k, rev in after.mod.items() if before.mod.get(k) != rev]
    gone = [k for k in before.mod if k not in after.mod and k not in before.leased]
    return sorted(changed + gone)
