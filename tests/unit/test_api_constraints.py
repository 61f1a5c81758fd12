"""Placement constraints (kubeless.api.constraints): parsing, refusals and matching, as
Swarm does, on plain data."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.replication.global_mode import eligibility
from kubeless.api.constraints import (
    Constraint,
    InvalidConstraint,
    constraint_error,
    matches,
    matches_all,
    node_attribute,
    normalise_key,
    parse_constraint,
)

PARSED = {
    "label": ("node.labels.zone==eu", Constraint("node.labels.zone", "==", "eu")),
    "spaces around the operator": ("node.role != manager", Constraint("node.role", "!=", "manager")),
    "id": ("node.id==n1", Constraint("node.id", "==", "n1")),
    "hostname": ("node.hostname==h", Constraint("node.hostname", "==", "h")),
    "os": ("node.platform.os==linux", Constraint("node.platform.os", "==", "linux")),
    "arch": ("node.platform.arch==x86_64", Constraint("node.platform.arch", "==", "x86_64")),
    "attribute case-insensitive": ("NODE.Role==worker", Constraint("node.role", "==", "worker")),
    "role value case-insensitive": ("node.role==Manager", Constraint("node.role", "==", "Manager")),
    "label key keeps its case": ("node.labels.Zone==eu", Constraint("node.labels.Zone", "==", "eu")),
    "label key with a prefix": ("node.labels.kubeless.io/rack==r1",
                                Constraint("node.labels.kubeless.io/rack", "==", "r1")),
    "value with swarm's specials": ("node.hostname==web-*.(a|b)",
                                    Constraint("node.hostname", "==", "web-*.(a|b)")),
    "value with a space inside": ("node.labels.desc==big box", Constraint("node.labels.desc", "==",
                                                                          "big box")),
}


@pytest.mark.parametrize(("text", "expected"), PARSED.values(), ids=PARSED.keys())
def test_parse(text: str, expected: Constraint) -> None:
    assert parse_constraint(text) == expected
    assert constraint_error(text) is None


REFUSED = {
    "single equals": ("node.labels.zone=eu", "expected ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE"),
    "no operator": ("node.role", "expected ATTRIBUTE==VALUE"),
    "other operator": ("node.role>=manager", "expected ATTRIBUTE==VALUE"),
    "no attribute": ("==eu", "no attribute before =="),
    "no value": ("node.role==", "no value after =="),
    "unknown attribute": ("node.colour==blue",
                          'unknown attribute "node.colour" (known: node.id, node.hostname, '
                          "node.role, node.platform.os, node.platform.arch, node.labels.<key>)"),
    "swarm's node.ip is not kept": ("node.ip==10.0.0.1", 'unknown attribute "node.ip"'),
    "no node. prefix": ("labels.zone==eu", 'unknown attribute "labels.zone"'),
    "bare node.": ("node.==eu", 'unknown attribute "node."'),
    "empty label key": ("node.labels.==b", 'names no label'),
    "bad label key": ("node.labels.-zone==eu", 'is not a valid label key'),
    "engine labels": ("engine.labels.os==ubuntu", "kubeless nodes do not report engine labels"),
    "role neither manager nor worker": ("node.role==boss",
                                        'node.role is manager or worker, not "boss"'),
    "operator inside the value": ("node.labels.expr==a!=b", 'value "a!=b" may only hold'),
    "value with a comma": ("node.labels.zone==eu,us", 'value "eu,us" may only hold'),
}


@pytest.mark.parametrize(("text", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_parse_refuses(text: str, message: str) -> None:
    with pytest.raises(InvalidConstraint) as caught:
        parse_constraint(text)
    assert message in str(caught.value)
    assert constraint_error(text) == str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("value", [None, 3, ["node.role==manager"], {"a": 1}],
                         ids=["none", "int", "list", "mapping"])
def test_not_a_string(value: object) -> None:
    assert "must be a string" in (constraint_error(value) or "")


def node(name: str = "n1", role: str | None = "manager", labels: dict[str, str] | None = None,
         hostname: str | None = "alpha", platform: dict[str, str] | None = None) -> dict[str, Any]:
    spec = {"role": role} if role else {}
    status: dict[str, Any] = {"hostname": hostname} if hostname else {}
    status["platform"] = platform if platform is not None else {"os": "linux", "arch": "x86_64"}
    return {"metadata": {"name": name, "labels": labels if labels is not None else {"zone": "eu"}},
            "spec": spec, "status": status}


NODE = node()
MATCHES = {
    "label equal": ("node.labels.zone==eu", NODE, True),
    "label differs": ("node.labels.zone==us", NODE, False),
    "label not equal": ("node.labels.zone!=us", NODE, True),
    "missing label never equals": ("node.labels.rack==r1", NODE, False),
    "missing label always differs": ("node.labels.rack!=r1", NODE, True),
    "label key is case-sensitive": ("node.labels.ZONE==eu", NODE, False),
    "role": ("node.role==manager", NODE, True),
    "role negated": ("node.role!=manager", NODE, False),
    "role defaults to worker": ("node.role==worker", node(role=None), True),
    "id": ("node.id==n1", NODE, True),
    "value case-insensitive": ("node.hostname==ALPHA", NODE, True),
    "no hostname reads as empty": ("node.hostname!=alpha", node(hostname=None), True),
    "os": ("node.platform.os==linux", NODE, True),
    "arch": ("node.platform.arch==arm64", NODE, False),
    "no platform reported": ("node.platform.os==linux", node(platform={}), False),
}


@pytest.mark.parametrize(("text", "target", "expected"), MATCHES.values(), ids=MATCHES.keys())
def test_matches(text: str, target: dict[str, Any], expected: bool) -> None:
    assert matches(parse_constraint(text), target) is expected


def test_matches_all_is_and() -> None:
    both = (parse_constraint("node.role==manager"), parse_constraint("node.labels.zone==eu"))
    assert matches_all(both, NODE)
    assert not matches_all(both, node(labels={"zone": "us"}))
    assert matches_all((), NODE)


@pytest.mark.parametrize(("key", "expected"), [
    ("node.labels.zone", "eu"), ("node.id", "n1"), ("node.role", "manager"),
    ("node.hostname", "alpha"), ("node.platform.arch", "x86_64"), ("node.labels.rack", None)])
def test_node_attribute(key: str, expected: str | None) -> None:
    assert node_attribute(normalise_key(key), NODE) == expected


def service(*constraints: Any) -> dict[str, Any]:
    return {"spec": {"mode": "global", "placement": {"constraints": list(constraints)}}}


ELIGIBLE = {
    "no constraints: every node": (service(), NODE, True),
    "constraint holds": (service("node.labels.zone==eu"), NODE, True),
    "constraint fails": (service("node.labels.zone==us"), NODE, False),
    "every constraint must hold": (service("node.labels.zone==eu", "node.role==worker"), NODE,
                                   False),
    "an unknown attribute makes no node eligible": (service("node.colour==blue"), NODE, False),
    "a value that is not a string makes no node eligible": (service(["x"]), NODE, False),
}


@pytest.mark.parametrize(("svc", "target", "expected"), ELIGIBLE.values(), ids=ELIGIBLE.keys())
def test_global_eligibility_uses_the_grammar(svc: dict[str, Any], target: dict[str, Any],
                                              expected: bool) -> None:
    assert eligibility(svc)(target) is expected
