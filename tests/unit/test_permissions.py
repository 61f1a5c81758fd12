"""The permission table: which etcd user and roles each identity gets, and exactly
what a node's role may read and write (pure: no etcd)."""

from __future__ import annotations

import pytest

from kubeless.cluster import identities, permissions
from kubeless.store import Keyspace
from kubeless.store.auth import Permission

KEYS = Keyspace("/kl")


def allowed(perms: frozenset[Permission], key: str, action: str) -> bool:
    """Whether ``perms`` let ``action`` (read, write) touch ``key``, as etcd decides."""
    for p in perms:
        covers = key.startswith(p.key) if p.prefix else key == p.key
        if covers and (p.kind == "readwrite" or p.kind == action):
            return True
    return False


def test_the_node_role_is_exactly_the_agreed_grants() -> None:
    assert permissions.node_permissions(KEYS, "n1") == {
        Permission("/kl/v1/agents/n1/", "readwrite", prefix=True),
        Permission("/kl/v1/heartbeats/n1", "readwrite"),
        Permission("/kl/v1/heartbeats/", "read", prefix=True),
        Permission("/kl/v1/endpoints/", "read", prefix=True),
        Permission("/kl/v1/cluster", "read"),
    }


NODE_CASES = {
    "its own assignment, read": ("/kl/v1/agents/n1/assignments/t1", "read", True),
    "its own task report, write": ("/kl/v1/agents/n1/tasks/t1", "write", True),
    "what later issues add under its prefix": ("/kl/v1/agents/n1/secrets/s", "write", True),
    "its heartbeat, write": ("/kl/v1/heartbeats/n1", "write", True),
    "another node's heartbeat, read (DNS)": ("/kl/v1/heartbeats/n2", "read", True),
    "another node's heartbeat, write": ("/kl/v1/heartbeats/n2", "write", False),
    "a heartbeat key that only starts with its id": ("/kl/v1/heartbeats/n10", "write", False),
    "endpoints, read": ("/kl/v1/endpoints/default/web", "read", True),
    "endpoints, write": ("/kl/v1/endpoints/default/web", "write", False),
    "the cluster record, read": ("/kl/v1/cluster", "read", True),
    "the cluster record, write (rotate a token)": ("/kl/v1/cluster", "write", False),
    "the plain join tokens": ("/kl/v1/secrets/join-tokens", "read", False),
    "a service spec, read": ("/kl/v1/spec/services/default/web", "read", False),
    "its own Node, write (promote itself)": ("/kl/v1/spec/nodes/n1", "write", False),
    "tasks, read": ("/kl/v1/tasks/default/web/t1", "read", False),
    "another node's assignment, read": ("/kl/v1/agents/n2/assignments/t1", "read", False),
    "a node whose id starts with its own": ("/kl/v1/agents/n10/assignments/t1", "read", False),
    "another node's prefix, write": ("/kl/v1/agents/n2/tasks/t1", "write", False),
    "another cluster's prefix": ("/other/v1/agents/n1/tasks/t1", "read", False),
    "a leader key": ("/kl/v1/leaders/scheduler", "write", False),
}


@pytest.mark.parametrize("key,action,ok", NODE_CASES.values(), ids=NODE_CASES.keys())
def test_what_node_n1_may_do(key: str, action: str, ok: bool) -> None:
    assert allowed(permissions.node_permissions(KEYS, "n1"), key, action) is ok


GRANTS = {
    "a node: a role of its own": (identities.node("n1"), "node:n1", ("node:n1",)),
    "a manager: root": (identities.manager("m1"), "manager:m1", ("root",)),
    "an admin: root": (identities.admin("alice"), "admin:alice", ("root",)),
}


@pytest.mark.parametrize("who,user,roles", GRANTS.values(), ids=GRANTS.keys())
def test_user_and_roles_of_each_identity(who: identities.Identity, user: str,
                                         roles: tuple[str, ...]) -> None:
    assert permissions.user_grant(who) == permissions.UserGrant(user, roles)


def test_expected_table_for_a_cluster() -> None:
    users, roles = permissions.expected(KEYS, [
        identities.node("m1"), identities.manager("m1"), identities.node("w1"),
        identities.admin("ops")])
    assert users == {"root": ("root",), "node:m1": ("node:m1",), "manager:m1": ("root",),
                     "node:w1": ("node:w1",), "admin:ops": ("root",)}
    assert set(roles) == {"node:m1", "node:w1"}
    assert roles["node:w1"] == permissions.node_permissions(KEYS, "w1")


def test_no_identity_can_be_etcds_root_user() -> None:
    with pytest.raises(identities.IdentityError):
        identities.parse_identity("root")
    for kind in identities.KINDS:
        assert identities.identity_error(kind, "root") is not None


# -- a hollow group (tests and benchmarks only) ---------------------------------------

def test_a_hollow_group_holds_its_nodes_keys_and_a_nodes_reads() -> None:
    grant, roles = permissions.hollow_group_grant(KEYS, "g")
    assert grant == permissions.UserGrant("node:g", ("hollow:g",))
    assert roles == {"hollow:g": {
        Permission("/kl/v1/agents/g-", "readwrite", prefix=True),
        Permission("/kl/v1/heartbeats/g-", "readwrite", prefix=True),
        Permission("/kl/v1/heartbeats/", "read", prefix=True),
        Permission("/kl/v1/endpoints/", "read", prefix=True),
        Permission("/kl/v1/cluster", "read"),
    }}


HOLLOW_CASES = {
    "a node's assignment, read": ("/kl/v1/agents/g-0/assignments/t1", "read", True),
    "a node's task report, write": ("/kl/v1/agents/g-12/tasks/t1", "write", True),
    "a node's heartbeat, write": ("/kl/v1/heartbeats/g-3", "write", True),
    "every heartbeat, read (DNS)": ("/kl/v1/heartbeats/h-0", "read", True),
    "another group's heartbeat, write": ("/kl/v1/heartbeats/h-0", "write", False),
    "another group's assignment, read": ("/kl/v1/agents/h-0/assignments/t1", "read", False),
    "a group whose name starts with its own": ("/kl/v1/agents/gg-0/tasks/t1", "read", False),
    "the group's name as a node (no '-')": ("/kl/v1/agents/g/tasks/t1", "read", False),
    "its nodes' Node, write": ("/kl/v1/spec/nodes/g-0", "write", False),
    "a service spec, read": ("/kl/v1/spec/services/default/web", "read", False),
    "the cluster record, write": ("/kl/v1/cluster", "write", False),
}


@pytest.mark.parametrize("key,action,ok", HOLLOW_CASES.values(), ids=HOLLOW_CASES.keys())
def test_what_hollow_group_g_may_do(key: str, action: str, ok: bool) -> None:
    assert allowed(permissions.hollow_group_permissions(KEYS, "g"), key, action) is ok
