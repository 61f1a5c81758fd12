"""Node identity: names, labels, the Node resource and the heartbeat value."""

from __future__ import annotations

import pytest

from kubeless.api import name_error
from kubeless_agent.identity import NodeIdentity, dns_label, memory_bytes, parse_labels


@pytest.mark.parametrize("raw, label", [
    ("worker-1", "worker-1"), ("My_Host.example.com", "my-host"), ("--x--", "x"),
    ("ÉTÉ", "t"), ("", "node"), ("a" * 80, "a" * 63),
])
def test_dns_label(raw: str, label: str) -> None:
    assert dns_label(raw) == label
    assert name_error(dns_label(raw)) is None


def test_parse_labels() -> None:
    assert parse_labels("zone=eu, ssd=true,,") == {"zone": "eu", "ssd": "true"}
    assert parse_labels(None) == {}
    with pytest.raises(ValueError, match="key=value"):
        parse_labels("zone")
    with pytest.raises(ValueError):
        parse_labels("bad key=1")


def test_identity_resources() -> None:
    ident = NodeIdentity("n1", "host", "10.0.0.1", {"zone": "eu"}, 4.0, 2048, "linux", "x86_64")
    assert ident.node_resource() == {
        "apiVersion": "kubeless.io/v1", "kind": "Node",
        "metadata": {"name": "n1", "labels": {"zone": "eu"}},
        "spec": {"role": "worker", "availability": "active"},
        "status": {"hostname": "host", "address": "10.0.0.1"}}
    hb = ident.heartbeat("2024-01-01T00:00:00Z")
    assert hb == {"hostname": "host", "address": "10.0.0.1",
                  "capacity": {"cpus": 4, "memory": 2048},
                  "platform": {"os": "linux", "arch": "x86_64"}, "runtime": "fake",
                  "startedAt": "2024-01-01T00:00:00Z"}
    hollow = ident.hollow(7)
    assert hollow.node_id == hollow.hostname == "n1-7"


def test_detect_and_overrides() -> None:
    ident = NodeIdentity.detect("n2", cpus=2.5, memory=1024)
    assert (ident.cpus, ident.memory, ident.node_id) == (2.5, 1024, "n2")
    assert NodeIdentity.detect().cpus >= 1
    assert memory_bytes() > 0
    assert memory_bytes("/nonexistent") == 0
    with pytest.raises(ValueError):
        NodeIdentity("Bad_Name", "h")
