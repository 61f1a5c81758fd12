"""Placement constraints: parsing (good and bad) and matching, as Swarm does."""

from __future__ import annotations

import pytest

from controllers.scheduler.constraints import Constraint, matches, parse_constraint
from controllers.scheduler.synthetic import make_node


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("node.labels.zone==eu", Constraint("node.labels.zone", "==", "eu"), id="label"),
        pytest.param("node.role != manager", Constraint("node.role", "!=", "manager"), id="spaces"),
        pytest.param("node.id==x", Constraint("node.id", "==", "x"), id="id"),
        pytest.param("node.hostname==h", Constraint("node.hostname", "==", "h"), id="hostname"),
        pytest.param("node.platform.os==linux", Constraint("node.platform.os", "==", "linux"),
                     id="os"),
        pytest.param("node.platform.arch==x86_64",
                     Constraint("node.platform.arch", "==", "x86_64"), id="arch"),
        pytest.param("NODE.Role==worker", Constraint("node.role", "==", "worker"),
                     id="key-case-insensitive"),
        pytest.param("node.labels.Zone==eu", Constraint("node.labels.Zone", "==", "eu"),
                     id="label-name-keeps-case"),
        pytest.param("node.labels.expr==a!=b", Constraint("node.labels.expr", "==", "a!=b"),
                     id="first-operator-wins"),
    ],
)
def test_parse(text: str, expected: Constraint) -> None:
    assert parse_constraint(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("node.labels.zone=eu", "expected key==value", id="single-equals"),
        pytest.param("node.role", "expected key==value", id="no-operator"),
        pytest.param("==eu", "expected key==value", id="no-key"),
        pytest.param("node.role==", "expected key==value", id="no-value"),
        pytest.param("node.ip==10.0.0.1", "unknown node attribute 'node.ip'", id="unknown-key"),
        pytest.param("engine.labels.a==b", "unknown node attribute", id="engine-labels"),
        pytest.param("node.labels.==b", "unknown node attribute", id="empty-label"),
    ],
)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_constraint(text)


NODE = make_node("n1", role="manager", labels={"zone": "eu"}, hostname="alpha")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("node.labels.zone==eu", True, id="label-equal"),
        pytest.param("node.labels.zone==us", False, id="label-differs"),
        pytest.param("node.labels.zone!=us", True, id="label-not-equal"),
        pytest.param("node.labels.rack==r1", False, id="missing-label-never-equals"),
        pytest.param("node.labels.rack!=r1", True, id="missing-label-always-differs"),
        pytest.param("node.role==manager", True, id="role"),
        pytest.param("node.role!=manager", False, id="role-negated"),
        pytest.param("node.id==n1", True, id="id"),
        pytest.param("node.hostname==ALPHA", True, id="value-case-insensitive"),
        pytest.param("node.platform.os==linux", True, id="os"),
        pytest.param("node.platform.arch==arm64", False, id="arch"),
    ],
)
def test_matches(text: str, expected: bool) -> None:
    assert matches(parse_constraint(text), NODE) is expected


def test_role_defaults_to_worker() -> None:
    node = make_node("n2")
    del node["spec"]["role"]
    assert matches(parse_constraint("node.role==worker"), node)
