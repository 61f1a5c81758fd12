"""The user's side of an autoscaled service: apply keeps the replicas the autoscaler set,
scale and update --replicas refuse in one line, ls and describe show it, a rollback
keeps the live replicas."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from kubeless.api.service_writes import scaled
from kubeless.store.services import replace_service
from tests.support.cli import Run, write
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration

REFUSAL = ("error: service default/web is autoscaled (min 1, max 10): change or remove "
           "spec.autoscale to set replicas; nothing was written\n")


def web(replicas: int, image: str = "web:1", autoscale: bool = True) -> str:
    spec: dict[str, object] = {"replicas": replicas, "template": {"image": image}}
    if autoscale:
        spec["autoscale"] = {"max": 10, "targetCPU": 70}
    return yaml.safe_dump({"apiVersion": "kubeless.io/v1", "kind": "Service",
                           "metadata": {"name": "web"}, "spec": spec})


def autoscaler_sets(cluster: EtcdCluster, prefix: str, replicas: int) -> None:
    """What the autoscaler writes: replicas alone, through the guarded write path."""
    async def run() -> None:
        rstore = cluster.connect(prefix)
        try:
            await replace_service(rstore, "web", "default", lambda s: scaled(s, replicas),
                                  what="autoscaling service web")
        finally:
            await rstore.etcd.close()
    asyncio.run(run())


def live(kubeless: Run) -> dict[str, object]:
    doc = yaml.safe_load(kubeless("get", "svc", "web", "-o", "yaml").stdout)
    assert isinstance(doc, dict)
    return doc


def test_an_autoscaled_service_keeps_its_replicas(kubeless: Run, etcd_cluster: EtcdCluster,
                                                  prefix: str, tmp_path: Path) -> None:
    f = tmp_path / "web.yaml"
    assert kubeless("apply", "-f", str(write(f, web(2)))).stdout == "service/web created\n"
    autoscaler_sets(etcd_cluster, prefix, 4)
    generation = live(kubeless)["metadata"]["generation"]  # type: ignore[index]
    assert generation == 1  # the autoscaler's write is no new generation

    res = kubeless("apply", "-f", str(f))
    assert res.stdout == "service/web unchanged (replicas 4 kept: autoscaled)\n", res.stderr
    res = kubeless("apply", "-f", str(write(f, web(2, "web:2"))))
    assert res.stdout == "service/web configured (replicas 4 kept: autoscaled)\n", res.stderr
    assert live(kubeless)["spec"]["replicas"] == 4  # type: ignore[index]

    for refused in (("service", "scale", "-d", "web=5"),
                    ("service", "update", "-d", "--replicas", "3", "web")):
        res = kubeless(*refused)
        assert (res.returncode, res.stdout, res.stderr) == (1, "", REFUSAL), refused
    assert live(kubeless)["spec"]["replicas"] == 4  # type: ignore[index]

    ls = kubeless("service", "ls").stdout.splitlines()
    assert "0/4 (auto 1-10)" in ls[1], ls
    shown = kubeless("describe", "service", "web").stdout
    assert "Autoscale:\n  Replicas:    4 (min 1, max 10), scale-down delay 5m\n" in shown, shown
    assert "  Cpu:         -% of 70% target" in shown

    autoscaler_sets(etcd_cluster, prefix, 7)
    assert kubeless("service", "rollback", "-d", "web").returncode == 0
    doc = live(kubeless)
    assert doc["spec"]["template"]["image"] == "web:1"  # type: ignore[index]
    assert doc["spec"]["replicas"] == 7  # type: ignore[index]

    # once autoscale is removed, the document's replicas count again
    res = kubeless("apply", "-f", str(write(f, web(2, autoscale=False))))
    assert res.stdout == "service/web configured\n", res.stderr
    assert live(kubeless)["spec"]["replicas"] == 2  # type: ignore[index]
    assert kubeless("service", "scale", "-d", "web=3").returncode == 0
