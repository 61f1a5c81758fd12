"""What each identity may do in etcd: the table, as pure functions.

etcd (with ``--client-cert-auth`` and auth enabled) takes a verified certificate's
common name as its user name, so an identity's etcd user is its common name:

    identity            etcd user         roles
    manager:<id>        manager:<id>      root   (controllers; they also keep the users)
    admin:<name>        admin:<name>      root   (the CLI; it signs, promotes, rotates)
    node:<id>           node:<id>         node:<id>, a role of its own:

        readwrite  <prefix>/v1/agents/<id>/        (prefix: its heartbeat-era keys,
                                                     assignments it reads, the tasks it
                                                     reports, what later issues add there)
        readwrite  <prefix>/v1/heartbeats/<id>     (the single key)
        read       <prefix>/v1/heartbeats/         (prefix: every node's address, for DNS)
        read       <prefix>/v1/endpoints/          (prefix: the services' endpoints)
        read       <prefix>/v1/cluster             (the single key: the record, its CA)

and nothing else: not ``spec/``, ``tasks/``, ``secrets/``, nor another node's
``agents/<other>/``. Managers and admins hold etcd's ``root`` role because only
root may manage users and roles (as Swarm's managers are all-powerful). etcd
also needs a ``root`` user before auth is turned on: made without a password,
and no certificate is ever signed for it (``identities.RESERVED``).

A role per node, named as its user, keeps a node's grants apart: removing the
node removes its role and user together (``access`` applies this table).

Tests and benchmarks only: a *hollow group* (``lab.hollow``, the benchmarks) is
one agent process serving hollow nodes ``<group>-0``, ``<group>-1``, ... under
the one identity ``node:<group>``, which a node's role would refuse. Its user
holds ``hollow:<group>`` instead: the node's grants for every node of the group

        readwrite  <prefix>/v1/agents/<group>-       (prefix: each node's keys)
        readwrite  <prefix>/v1/heartbeats/<group>-   (prefix: each node's heartbeat)
        read       heartbeats/, endpoints/, cluster  (as a node)

No kubeless command makes that role: ``init``, the join endpoint and ``node``
commands know only the table above.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kubeless.store import Keyspace
from kubeless.store.auth import ROOT, Permission

from . import identities
from .identities import Identity


@dataclass(frozen=True)
class UserGrant:
    """An etcd user and exactly the roles it should hold."""

    user: str
    roles: tuple[str, ...]


def user_name(who: Identity) -> str:
    """The etcd user of an identity: its certificate's common name."""
    return who.common_name


def node_role_name(node_id: str) -> str:
    return f"node:{node_id}"


def node_permissions(keys: Keyspace, node_id: str) -> frozenset[Permission]:
    """Exactly what node ``node_id``'s agent may read and write."""
    return frozenset({
        Permission(keys.agent(node_id), "readwrite", prefix=True),
        Permission(keys.heartbeat(node_id), "readwrite"),
        *_node_reads(keys),
    })


def _node_reads(keys: Keyspace) -> frozenset[Permission]:
    """What every node reads: each heartbeat (DNS, join endpoints), the endpoints, the
    cluster record."""
    return frozenset({
        Permission(keys.heartbeats_prefix(), "read", prefix=True),
        Permission(keys.endpoints_prefix(), "read", prefix=True),
        Permission(keys.cluster(), "read"),
    })


def hollow_group_role_name(group: str) -> str:
    return f"hollow:{group}"


def hollow_group_permissions(keys: Keyspace, group: str) -> frozenset[Permission]:
    """What the agent process of hollow group ``group`` (nodes ``<group>-<i>``) may read
    and write: tests and benchmarks only (see the module docstring)."""
    return frozenset({
        Permission(f"{keys.agents_prefix()}{group}-", "readwrite", prefix=True),
        Permission(f"{keys.heartbeats_prefix()}{group}-", "readwrite", prefix=True),
        *_node_reads(keys),
    })


def hollow_group_grant(keys: Keyspace, group: str
                       ) -> tuple[UserGrant, dict[str, frozenset[Permission]]]:
    """The user ``node:<group>`` of a hollow group, and its one role (tests, benchmarks)."""
    role = hollow_group_role_name(group)
    return (UserGrant(user_name(identities.node(group)), (role,)),
            {role: hollow_group_permissions(keys, group)})


def user_grant(who: Identity) -> UserGrant:
    """The etcd user of ``who`` and its roles."""
    if who.kind == "node":
        return UserGrant(user_name(who), (node_role_name(who.name),))
    return UserGrant(user_name(who), (ROOT,))  # managers and admins


def roles_for(keys: Keyspace, who: Identity) -> dict[str, frozenset[Permission]]:
    """The roles of its own that ``who`` needs (root is etcd's: nothing to make)."""
    if who.kind == "node":
        return {node_role_name(who.name): node_permissions(keys, who.name)}
    return {}


def expected(keys: Keyspace, identities: Iterable[Identity]
             ) -> tuple[dict[str, tuple[str, ...]], dict[str, frozenset[Permission]]]:
    """The users (user -> roles) and roles (role -> permissions) etcd should hold for
    ``identities``, ``root`` included."""
    users: dict[str, tuple[str, ...]] = {ROOT: (ROOT,)}
    roles: dict[str, frozenset[Permission]] = {}
    for who in identities:
        grant = user_grant(who)
        users[grant.user] = grant.roles
        roles.update(roles_for(keys, who))
    return users, roles
