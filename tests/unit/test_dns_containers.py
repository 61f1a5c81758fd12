"""What containers are told about the cluster DNS, and where the agent finds the bridge,
its upstreams and the node's ``dns`` status (pure: no engine, no sockets)."""

from __future__ import annotations

import pytest

from kubeless_agent.dns.resolvconf import upstreams
from kubeless_agent.dns.server import container_nameserver
from kubeless_agent.dns.wiring import container_dns, listen_addresses
from kubeless_agent.node_status import dns_fields
from kubeless_agent.runtime.bridge import Bridge, bridge_gateway
from kubeless_agent.runtime.docker_spec import ClusterDns, container_config

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


@pytest.mark.parametrize("name,text,own,want", [
    ("in order, without repeats, comments or other lines",
     "# c\nnameserver 10.0.0.2 # main\nsearch x\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n",
     [], [("10.0.0.2", 53), ("10.0.0.3", 53)]),
    ("loopback upstreams are kept: the agent runs on the host and reaches them",
     "nameserver 127.0.0.53\nnameserver ::1\n", [("127.0.0.2", 53)],
     [("127.0.0.53", 53), ("::1", 53)]),
    ("the agent's own address is never an upstream (a loop)",
     "nameserver 127.0.0.2\nnameserver 10.0.0.2\n", [("127.0.0.2", 53)], [("10.0.0.2", 53)]),
    ("listening on 0.0.0.0:53, every loopback port 53 is the agent",
     "nameserver 127.0.0.53\nnameserver 10.0.0.2\n", [("0.0.0.0", 53)], [("10.0.0.2", 53)]),
    ("the OpenBSD form gives a port", "nameserver [127.0.0.9]:5300\nnameserver [::1]:5301\n",
     [("127.0.0.9", 53)], [("127.0.0.9", 5300), ("::1", 5301)]),
    ("a scoped IPv6 address", "nameserver fe80::1%eth0\n", [], [("fe80::1%eth0", 53)]),
    ("garbage and names are skipped",
     "nameserver\nnameserver dns.example\nnameserver [1.2.3.4]:x\nnameserver 1.2.3\n", [], []),
    ("nothing", "", [], []),
])
def test_upstreams(name: str, text: str, own: list[tuple[str, int]],
                   want: list[tuple[str, int]]) -> None:
    assert upstreams(text, own) == want, name


IPAM_GW = {"IPAM": {"Config": [{"Subnet": SUBNET, "Gateway": GW}]}}
NO_GW = {"IPAM": {"Config": [{"Subnet": SUBNET}]},  # Debian's docker.io 20.10
         "Options": {"com.docker.network.bridge.name": "docker0"}}
OTHER_IF = {"IPAM": {"Config": [{"Subnet": "10.9.0.0/24"}]},
            "Options": {"com.docker.network.bridge.name": "br-kubeless"}}


@pytest.mark.parametrize("name,network,addrs,want", [
    ("the IPAM gateway wins", IPAM_GW, ["172.17.9.9"], Bridge(GW, SUBNET, "IPAM gateway")),
    ("20.10's shape (no Gateway): the interface's address", NO_GW, ["172.17.0.1/16"],
     Bridge(GW, SUBNET, "address of docker0")),
    ("no Gateway: the interface's address inside the subnet, not the first",
     NO_GW, ["192.168.9.1/24", "172.17.0.1/16"], Bridge(GW, SUBNET, "address of docker0")),
    ("another bridge interface", OTHER_IF, ["10.9.0.1"],
     Bridge("10.9.0.1", "10.9.0.0/24", "address of br-kubeless")),
    ("no Gateway, no interface address: the subnet's first host", NO_GW, [],
     Bridge(GW, SUBNET, f"first host of {SUBNET}")),
    ("no Gateway nor subnet: the interface's address and its network", {"IPAM": {}},
     ["172.18.0.1/16"], Bridge("172.18.0.1", "172.18.0.0/16", "address of docker0")),
    ("an IPv6 gateway only: the IPv4 subnet's first host",
     {"IPAM": {"Config": [{"Subnet": "fd00::/64", "Gateway": "fd00::1"}, {"Subnet": SUBNET}]}},
     ["fd00::1/64"], Bridge(GW, SUBNET, f"first host of {SUBNET}")),
    ("nothing says", {"IPAM": {"Config": None}}, [], None),
    ("an empty document", {}, [], None),
])
def test_bridge_gateway(name: str, network: dict, addrs: list[str],  # type: ignore[type-arg]
                        want: Bridge | None) -> None:
    assert bridge_gateway(network, addrs) == want, name


@pytest.mark.parametrize("name,serving,bridge,docker,want", [
    ("serving on the gateway", [("127.0.0.2", 53), (GW, 53)], (GW, SUBNET), True, (GW, "")),
    ("not a docker runtime: nothing to tell", [("127.0.0.2", 53)], None, False, (None, "")),
    ("no bridge found", [("127.0.0.2", 53)], None, True,
     (None, "no address of the Docker bridge found: containers get the engine's default "
            "nameservers (no service names)")),
    ("the gateway's port 53 could not be bound", [("127.0.0.2", 53)], (GW, SUBNET), True,
     (None, f"not serving DNS on port 53 of the Docker bridge {SUBNET}: containers get the "
            "engine's default nameservers (no service names)")),
])
def test_container_dns(name: str, serving: list[tuple[str, int]], bridge: tuple[str, str] | None,
                       docker: bool, want: tuple[str | None, str]) -> None:
    assert container_dns(serving, bridge, docker) == want, name


@pytest.mark.parametrize("name,dns_addrs,bridge,want", [
    ("automatic: the node's address and the gateway", None, (GW, SUBNET),
     [("127.0.0.2", 53), (GW, 53)]),
    ("automatic, no bridge", None, None, [("127.0.0.2", 53)]),
    ("given", ("127.0.0.2:5353", "172.17.255.201"), (GW, SUBNET),
     [("127.0.0.2", 5353), ("172.17.255.201", 53)]),
])
def test_listen_addresses(name: str, dns_addrs: tuple[str, ...] | None,
                          bridge: tuple[str, str] | None, want: list[tuple[str, int]]) -> None:
    assert listen_addresses(dns_addrs, "127.0.0.2", bridge) == want, name


def test_the_node_status_names_every_reason_dns_does_not_work() -> None:
    fields = dns_fields([("127.0.0.2", 53)], {(GW, 53): "Address already in use"}, None,
                        [], ["not serving DNS on port 53 of the Docker bridge x", "",
                             "no upstream nameserver in /etc/resolv.conf"])
    assert fields == {"dns": {
        "serving": ["127.0.0.2:53"], "nameserver": "", "upstreams": [],
        "error": f"cannot serve on {GW}:53: Address already in use; not serving DNS on port 53 "
                 "of the Docker bridge x; no upstream nameserver in /etc/resolv.conf"}}
    ok = dns_fields([(GW, 53)], {}, GW, [("::1", 53)], ["", ""])
    assert ok == {"dns": {"serving": [f"{GW}:53"], "nameserver": GW, "upstreams": ["[::1]:53"],
                          "error": ""}}


def task(namespace: str = "shop") -> dict:  # type: ignore[type-arg]
    return {"metadata": {"name": "t" * 25, "namespace": namespace},
            "spec": {"serviceName": "web", "slot": 1, "template": {"image": "web:1"}}}


def test_containers_get_the_agents_dns_only_and_their_namespace_first() -> None:
    host = container_config(task(), "n1", "127.0.0.1", ClusterDns((GW,)))["host_config"]
    assert host["dns"] == [GW]
    assert host["dns_search"] == ["shop.kubeless", "kubeless"]


def test_without_cluster_dns_the_engine_decides() -> None:
    host = container_config(task(), "n1", "127.0.0.1")["host_config"]
    assert "dns" not in host and "dns_search" not in host


class _Runtime:
    supports_cluster_dns = True  # as docker's

    def __init__(self) -> None:
        self.told: list[str | None] = []

    def use_cluster_dns(self, nameserver: str | None) -> None:
        self.told.append(nameserver)


class _Beats:
    def __init__(self) -> None:
        self.fields: dict[str, dict] = {}  # type: ignore[type-arg]
        self.updates = 0

    def update(self, node_id: str, fields: dict) -> None:  # type: ignore[type-arg]
        self.fields[node_id] = fields
        self.updates += 1


def test_the_wiring_follows_what_is_bound() -> None:
    from kubeless_agent.dns.server import DnsServer
    from kubeless_agent.dns.wiring import DnsWiring

    server = DnsServer([("127.0.0.2", 53), (GW, 53)])
    runtime, beats = _Runtime(), _Beats()
    wiring = DnsWiring(server, runtime, (GW, SUBNET), beats, ["n1"])
    server.unbound[(GW, 53)] = "Address already in use"
    server.sockets[("127.0.0.2", 53)] = []
    wiring.changed()
    assert runtime.told == [None]  # the engine's defaults: a dead nameserver is worse
    assert beats.fields["n1"]["dns"]["error"].startswith(
        f"cannot serve on {GW}:53: Address already in use; not serving DNS on port 53")
    wiring.changed()
    assert beats.updates == 1  # nothing new: no heartbeat put
    del server.unbound[(GW, 53)]
    server.sockets[(GW, 53)] = []
    wiring.changed()
    assert runtime.told == [None, None, GW]
    assert beats.fields["n1"]["dns"] == {"serving": ["127.0.0.2:53", f"{GW}:53"],
                                         "nameserver": GW, "upstreams": [], "error": ""}
