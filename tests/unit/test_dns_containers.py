"""What containers are told about the cluster DNS (pure: no engine)."""

from __future__ import annotations

import pytest

from kubeless_agent.dns.server import container_nameserver
from kubeless_agent.runtime.docker_spec import ClusterDns, container_config, upstream_nameservers

GW, SUBNET = "172.17.0.1", "172.17.0.0/16"


@pytest.mark.parametrize("name,addrs,want", [
    ("the gateway", [("127.0.0.2", 53), (GW, 53)], GW),
    ("every address", [("0.0.0.0", 53)], GW),
    ("another address of the bridge", [("127.0.0.2", 53), ("172.17.255.201", 53)],
     "172.17.255.201"),
    ("not on port 53: a resolver cannot use it", [(GW, 5353)], None),
    ("only loopback", [("127.0.0.2", 53)], None),
    ("outside the bridge", [("10.1.1.1", 53)], None),
])
def test_container_nameserver(name: str, addrs: list[tuple[str, int]], want: str | None) -> None:
    assert container_nameserver(addrs, GW, SUBNET) == want, name


def test_upstreams_skip_loopback_and_repeats() -> None:
    text = "# c\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nsearch x\n" \
           "nameserver 10.0.0.2\nnameserver 10.0.0.3\n"
    assert upstream_nameservers(text) == ["10.0.0.2", "10.0.0.3"]


def task(namespace: str = "shop") -> dict:  # type: ignore[type-arg]
    return {"metadata": {"name": "t" * 25, "namespace": namespace},
            "spec": {"serviceName": "web", "slot": 1, "template": {"image": "web:1"}}}


def test_containers_get_the_cluster_dns_and_their_namespace_first() -> None:
    host = container_config(task(), "n1", "127.0.0.1",
                            ClusterDns((GW, "10.0.0.2")))["host_config"]
    assert host["dns"] == [GW, "10.0.0.2"]
    assert host["dns_search"] == ["shop.kubeless", "kubeless"]


def test_without_cluster_dns_the_engine_decides() -> None:
    host = container_config(task(), "n1", "127.0.0.1")["host_config"]
    assert "dns" not in host and "dns_search" not in host
