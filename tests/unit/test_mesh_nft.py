"""The kernel path's table as a pure function of what a node forwards (kubeless_agent.mesh.nft).

Named cases on plain data, then ``nft -c`` (check mode: the kernel validates the
batch and applies nothing) on every generated batch, where nft works.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from kubeless_agent.mesh.kernel import KernelPathUnavailable, mesh_path
from kubeless_agent.mesh.kernel_host import NftHost
from kubeless_agent.mesh.nft import (MASQUERADE_MARK, Ruleset, build_table, delete_batch,
                                     docker_targets, endpoint_counts, table_name)
from kubeless_agent.mesh.published import Group, Published
from kubeless_agent.mesh.table import Backend

NODE, OTHER = "node-a", "node-b"
HERE, THERE = "10.0.0.2", "10.0.0.3"


def route(groups: tuple[Group, ...], port: int = 8080, protocol: str = "tcp",
          local_only: bool = False) -> dict[tuple[int, str], Published]:
    return {(port, protocol): Published("Route", "default", "shop", port, protocol, "shop",
                                        groups, local_only)}


def here(port: int, task: str = "t") -> Backend:
    return Backend(HERE, port, task, NODE)


def there(port: int, task: str = "u") -> Backend:
    return Backend(THERE, port, task, OTHER)


def rules_of(ruleset: Ruleset, chain: str) -> list[list[dict[str, Any]]]:
    return [c["add"]["rule"]["expr"] for c in ruleset.commands
            if "rule" in c.get("add", {}) and c["add"]["rule"]["chain"] == chain]


def chains(ruleset: Ruleset) -> list[str]:
    return [c["add"]["chain"]["name"] for c in ruleset.commands if "chain" in c.get("add", {})]


def ranges(ruleset: Ruleset, chain: str) -> list[tuple[int, int, str]]:
    [[vmap]] = rules_of(ruleset, chain)
    return [(r["range"][0], r["range"][1], to["goto"]["target"])
            for r, to in vmap["vmap"]["data"]["set"]]


def marks(expr: list[dict[str, Any]]) -> bool:
    return any("mangle" in e and e["mangle"]["value"]["|"][1] == MASQUERADE_MARK for e in expr)


def dnat(ruleset: Ruleset, chain: str) -> dict[str, Any]:
    return next(e["dnat"] for expr in rules_of(ruleset, chain) for e in expr if "dnat" in e)


def test_the_table_has_a_fixed_name_per_node_and_is_replaced_whole() -> None:
    ruleset = build_table(NODE, {}, [HERE])
    assert ruleset.table == table_name(NODE) == "kubeless_node_a"
    table = {"table": {"family": "inet", "name": "kubeless_node_a"}}
    assert list(ruleset.commands[:3]) == [{"add": table}, {"delete": table}, {"add": table}]
    assert delete_batch(NODE) == {"nftables": [{"add": table}, {"delete": table}]}


def test_weights_become_bucket_ranges_of_numgen() -> None:
    ruleset = build_table(NODE, route((Group("default/a", 90, (there(1),)),
                                       Group("default/b", 10, (there(2), there(3))))),
                          [HERE])
    assert ranges(ruleset, "port_tcp_8080") == [(0, 899, "ep_tcp_8080_0"),
                                                (900, 949, "ep_tcp_8080_1"),
                                                (950, 999, "ep_tcp_8080_2")]
    [[vmap]] = rules_of(ruleset, "port_tcp_8080")
    assert vmap["vmap"]["key"]["numgen"] == {"mode": "random", "mod": 1000, "offset": 0}
    assert [r.service for r in ruleset.endpoints] == ["default/a", "default/b", "default/b"]


def test_a_group_without_weight_or_backends_gets_no_bucket() -> None:
    ruleset = build_table(NODE, route((Group("default/a", 0, (there(1),)),
                                       Group("default/b", 5, ()),
                                       Group("default/c", 1, (there(3),)))), [HERE])
    assert ranges(ruleset, "port_tcp_8080") == [(0, 999, "ep_tcp_8080_0")]
    assert [r.service for r in ruleset.endpoints] == ["default/c"]


def test_remote_endpoints_are_masqueraded_local_ones_keep_the_client_address() -> None:
    ruleset = build_table(NODE, route((Group("default/a", 1, (here(1), there(2))),)), [HERE])
    local, remote = ruleset.endpoints
    assert (local.local, local.masquerade, remote.local, remote.masquerade) == \
        (True, False, False, True)
    first_local, loopback_local, _ = rules_of(ruleset, local.chain)
    assert {"counter": None} in first_local and not marks(first_local)
    assert marks(loopback_local)  # only from a loopback source
    assert loopback_local[0]["match"]["right"] == {"prefix": {"addr": "127.0.0.0", "len": 8}}
    first_remote, _ = rules_of(ruleset, remote.chain)
    assert marks(first_remote)
    assert dnat(ruleset, remote.chain) == {"family": "ip", "addr": THERE, "port": 2}
    [[*_, masquerade]] = rules_of(ruleset, "postrouting")
    assert masquerade == {"masquerade": None}


def test_local_only_uses_local_endpoints_and_never_marks() -> None:
    ruleset = build_table(NODE, route((Group("default/a", 1, (here(1), there(2))),),
                                      local_only=True), [HERE])
    [only] = ruleset.endpoints
    assert only.local and not only.masquerade
    assert not any(marks(expr) for expr in rules_of(ruleset, only.chain))


def test_local_only_without_a_local_endpoint_is_refused() -> None:
    ruleset = build_table(NODE, route((Group("default/a", 1, (there(2),)),), local_only=True),
                          [HERE])
    assert ruleset.endpoints == () and ruleset.refused == ((8080, "tcp"),)


def test_udp_ports_are_forwarded_too() -> None:
    ruleset = build_table(NODE, route((Group("default/dns", 1, (there(31000),)),),
                                      port=53, protocol="udp"), [HERE])
    [[vmap]] = rules_of(ruleset, "services")
    assert vmap["vmap"]["data"]["set"] == [[{"concat": ["udp", 53]},
                                            {"goto": {"target": "port_udp_53"}}]]
    *_, last = rules_of(ruleset, "ep_udp_53_0")
    assert last[0]["match"]["right"] == "udp"
    assert last[1]["dnat"] == {"family": "ip", "addr": THERE, "port": 31000}


def test_ports_without_endpoints_are_refused_with_a_reset() -> None:
    published = {**route((Group("default/a", 1, ()),), port=81),
                 **route((Group("default/d", 1, ()),), port=53, protocol="udp")}
    ruleset = build_table(NODE, published, [HERE])
    assert ruleset.refused == ((53, "udp"), (81, "tcp"))
    assert "port_tcp_81" not in chains(ruleset) and rules_of(ruleset, "services") == []
    [[_, _, ports, jump]] = rules_of(ruleset, "refuse")
    assert ports["match"]["right"] == {"set": [{"concat": ["udp", 53]},
                                               {"concat": ["tcp", 81]}]}
    assert jump == {"jump": {"target": "refused"}}
    assert rules_of(ruleset, "refused")[0][-1] == {"reject": {"type": "tcp reset"}}


def test_the_mesh_bind_decides_which_destinations_are_caught() -> None:
    one = build_table(NODE, {}, [HERE])
    assert rules_of(one, "prerouting")[0][1]["match"]["right"] == HERE
    assert rules_of(one, "output")[0][1]["match"]["right"] == \
        {"set": [HERE, {"prefix": {"addr": "127.0.0.0", "len": 8}}]}
    anywhere = build_table(NODE, {}, ["0.0.0.0"])
    for hook in ("prerouting", "output"):
        assert rules_of(anywhere, hook)[0][1]["match"] == {
            "op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}},
            "right": "local"}


def test_a_local_docker_endpoint_is_sent_straight_to_its_container() -> None:
    rules = ("-N DOCKER\n-A DOCKER -i docker0 -j RETURN\n"
             "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 32768 -j DNAT "
             "--to-destination 172.17.0.2:80\n"
             "-A DOCKER -d 10.0.0.2/32 ! -i docker0 -p udp -m udp --dport 32769 -j DNAT "
             "--to-destination 172.17.0.3:53\n")
    targets = docker_targets(rules)
    assert targets == {(32768, "tcp"): ("172.17.0.2", 80), (32769, "udp"): ("172.17.0.3", 53)}
    ruleset = build_table(NODE, route((Group("default/a", 1, (here(32768), there(32768))),)),
                          [HERE], local_targets=targets)
    local, remote = ruleset.endpoints
    assert dnat(ruleset, local.chain) == {"family": "ip", "addr": "172.17.0.2", "port": 80}
    assert dnat(ruleset, remote.chain) == {"family": "ip", "addr": THERE, "port": 32768}
    assert local.endpoint == f"{HERE}:32768"  # metrics name the endpoint, not the container


def test_endpoint_counts_are_read_from_a_listing() -> None:
    listing = {"nftables": [
        {"metainfo": {}},
        {"rule": {"table": "kubeless_node_a", "chain": "ep_tcp_8080_0",
                  "expr": [{"counter": {"packets": 7, "bytes": 420}}]}},
        {"rule": {"table": "kubeless_node_a", "chain": "port_tcp_8080", "expr": []}},
        {"rule": {"table": "other", "chain": "ep_tcp_8080_0",
                  "expr": [{"counter": {"packets": 99, "bytes": 1}}]}}]}
    assert endpoint_counts(listing, "kubeless_node_a") == {"ep_tcp_8080_0": 7}
    assert endpoint_counts({}, "kubeless_node_a") == {}


@pytest.mark.parametrize(("mode", "unavailable", "path"), [
    ("auto", None, "kernel"), ("auto", "nft: not found", "userspace"),
    ("kernel", None, "kernel"), ("userspace", None, "userspace"),
    ("userspace", "nft: not found", "userspace")])
def test_the_mesh_path(mode: str, unavailable: str | None, path: str) -> None:
    assert mesh_path(mode, unavailable) == path


def test_kernel_mode_without_nftables_is_one_clear_error() -> None:
    with pytest.raises(KernelPathUnavailable, match="--mesh-mode kernel: nftables does not "
                                                    "work here: Operation not permitted"):
        mesh_path("kernel", "Operation not permitted")


def _batches() -> list[Ruleset]:
    mixed = {**route((Group("default/a", 90, (here(1), there(2))),
                      Group("default/b", 10, (there(3),)))),
             **route((Group("default/d", 1, (there(31000),)),), port=53, protocol="udp"),
             **route((Group("default/e", 1, ()),), port=81),
             **route((Group("default/l", 1, (here(4), there(5))),), port=82, local_only=True)}
    return [build_table(NODE, {}, [HERE]), build_table(NODE, mixed, [HERE]),
            build_table(NODE, mixed, ["0.0.0.0"]),
            build_table(NODE, mixed, [HERE], local_targets={(1, "tcp"): ("172.17.0.2", 80)})]


@pytest.mark.parametrize("index", range(4))
def test_nft_accepts_every_generated_batch(index: int) -> None:
    host = NftHost()
    why = host.probe()
    if why is not None:
        if os.environ.get("CI") == "true":  # CI installs nftables: a missing one is a failure
            pytest.fail(f"nft does not work here: {why}")
        pytest.skip(f"nft does not work here: {why}")
    ruleset = _batches()[index]
    json.dumps(ruleset.batch())  # plain JSON
    host.check(ruleset.batch())  # check mode: validated by the kernel, nothing applied
