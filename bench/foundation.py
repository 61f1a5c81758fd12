"""Foundation figures: informer list+decode, apply of 100 services, `kubeless get` wall time,
small transactions over TLS beside plain.

Targets (issue 2): informer list+decode of 10,000 Tasks under 1 s; apply of
a folder of 100 services under 1 s; `kubeless get services` under 300 ms.
TLS (issue 14): the same loop of small etcd transactions, one at a time, on
a plain etcd and on one with TLS and client certificates, in the same run;
the ratio is the cost of TLS per round trip (auth off: its cost is
control_plane's third column).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from kubeless import store
from kubeless.api.tasks import new_task_id
from kubeless.cluster.etcd_server import EtcdCluster

PREFIX = "/bench"


def _task(i: int) -> dict:
    return {"apiVersion": "kubeless.io/v1", "kind": "Task",
            "metadata": {"name": new_task_id(), "namespace": "default",
                         "labels": {"kubeless.io/service": f"svc-{i % 100}"}},
            "spec": {"serviceName": f"svc-{i % 100}", "slot": i // 100 + 1, "specVersion": 1,
                     "desiredState": "running", "nodeName": f"node-{i % 1000}",
                     "template": {"image": "web:1", "command": ["httpd"],
                                  "args": ["-f", "-p", "80"], "env": {"A": "1"},
                                  "restartPolicy": {"condition": "any", "delay": "5s",
                                                    "maxAttempts": 0, "window": "0s"},
                                  "stopGracePeriod": "10s"},
                     "ports": [{"target": 80, "published": 8080, "protocol": "tcp",
                                "mode": "ingress"}]},
            "status": {"state": "running", "timestamp": 1700000000.0}}


async def _informer_figure(endpoints: str) -> None:
    rstore = store.connect(endpoints, PREFIX)
    tasks = [_task(i) for i in range(10_000)]
    for start in range(0, len(tasks), 100):
        txn = rstore.transaction()
        for t in tasks[start:start + 100]:
            txn.create(t)
        await txn.commit()
    prefix = rstore.keys.kind_prefix("Task")
    runs = []
    for _ in range(3):
        inf = store.Informer(rstore.etcd, prefix, lambda kv: rstore.decode("Task", kv))
        started = time.perf_counter()
        await inf.relist()
        runs.append(time.perf_counter() - started)
        assert len(inf.cache) == 10_000
    print(f"informer list+decode of 10,000 Tasks: best {min(runs) * 1000:.0f} ms, "
          f"median {statistics.median(runs) * 1000:.0f} ms (target < 1000 ms)")
    await rstore.etcd.close()


def _cli(endpoints: str, *args: str, cert_path: Path | None = None) -> float:
    env = {**os.environ, "KUBELESS_ENDPOINTS": endpoints, "KUBELESS_PREFIX": PREFIX}
    env.pop("KUBELESS_CERT_PATH", None)
    if cert_path is not None:
        env["KUBELESS_CERT_PATH"] = str(cert_path)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kubeless_cli.main", *args], check=True,
                   capture_output=True, env=env)
    return time.perf_counter() - started


def _services_folder(root: Path) -> Path:
    folder = root / "services"
    folder.mkdir()
    for i in range(100):
        doc = {"apiVersion": "kubeless.io/v1", "kind": "Service",
               "metadata": {"name": f"svc-{i}", "labels": {"owner": "bench"}},
               "spec": {"replicas": 3, "template": {"image": "web:1", "command": ["httpd"]},
                        "ports": [{"target": 80, "published": 10000 + i}]}}
        (folder / f"svc-{i}.yaml").write_text(yaml.safe_dump(doc))
    return folder


TXNS = 2000


async def _txn_loop(endpoints: str, tls: store.TlsConfig | None) -> float:
    """Seconds per guarded put (create then compare-and-update), one at a time."""
    rstore = store.connect(endpoints, PREFIX, tls=tls)
    try:
        key = f"{PREFIX}/txn-bench"
        await rstore.etcd.txn([], [store.Put(key, b"0")])  # the channel is up and warm
        kv, _ = await rstore.etcd.get(key)
        assert kv is not None
        revision = kv.mod_revision
        started = time.perf_counter()
        for i in range(TXNS):
            result = await rstore.etcd.txn([store.Compare(key, "mod", "==", revision)],
                                           [store.Put(key, str(i).encode())])
            assert result.succeeded
            revision = result.revision
        return (time.perf_counter() - started) / TXNS
    finally:
        await rstore.etcd.close()


def tls_figure() -> None:
    plain, secure = EtcdCluster(1).start(), EtcdCluster(1, tls=True, auth=False).start()
    try:
        ident = secure.identity("admin:bench")
        tls = store.TlsConfig(ident / "ca.pem", ident / "cert.pem", ident / "key.pem")
        runs: dict[str, list[float]] = {"plain": [], "tls": []}
        for _ in range(3):  # interleaved, so a busy moment hurts both
            runs["plain"].append(asyncio.run(_txn_loop(plain.endpoints, None)))
            runs["tls"].append(asyncio.run(_txn_loop(secure.endpoints, tls)))
        p, t = statistics.median(runs["plain"]), statistics.median(runs["tls"])
        print(f"{TXNS} small txns one at a time, median of 3: plain {p * 1e6:.0f} us/txn, "
              f"TLS with client certificates {t * 1e6:.0f} us/txn, ratio {t / p:.2f}")
        gets = {"plain": [_cli(plain.endpoints, "get", "services") for _ in range(5)],
                "tls": [_cli(secure.endpoints, "get", "services", cert_path=ident)
                        for _ in range(5)]}
        p, t = statistics.median(gets["plain"]), statistics.median(gets["tls"])
        print(f"kubeless get services (empty), wall, median of 5: plain {p * 1000:.0f} ms, "
              f"TLS {t * 1000:.0f} ms, ratio {t / p:.2f} (a new connection per command)")
    finally:
        plain.stop()
        secure.stop()


def main() -> None:
    tls_figure()
    cluster = EtcdCluster(1).start()
    try:
        asyncio.run(_informer_figure(cluster.endpoints))
        with tempfile.TemporaryDirectory() as tmp:
            folder = _services_folder(Path(tmp))
            first = _cli(cluster.endpoints, "apply", "-f", str(folder))
            again = _cli(cluster.endpoints, "apply", "-f", str(folder))
            print(f"apply of a folder of 100 services: {first * 1000:.0f} ms creating, "
                  f"{again * 1000:.0f} ms unchanged (target < 1000 ms; whole CLI process)")
        gets = [_cli(cluster.endpoints, "get", "services") for _ in range(5)]
        print(f"kubeless get services (100 services), wall: best {min(gets) * 1000:.0f} ms, "
              f"median {statistics.median(gets) * 1000:.0f} ms (target < 300 ms)")
    finally:
        cluster.stop()
