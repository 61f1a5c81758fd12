"""Keeping etcd's users and roles as ``permissions`` says, and turning auth on.

    enable_auth         ``root`` (no password), the users of the identities given,
                        then auth on: ``init`` and ``up`` (each run again: converges)
    admit               one identity's user (and a node's own role): the join
                        endpoint before it returns a certificate, ``kubeless user
                        add`` for more admins
    admit_node          a node's users: ``node:<id>``, and ``manager:<id>`` (root)
                        for a manager; a worker's ``manager:<id>`` is removed
                        (``node promote``/``demote`` call it with the new role)
    remove_node         ``node rm``: the node's users and role go, so its
                        certificates are refused from their next request on
    enable_for_node     what ``init`` and ``up`` run: root, the first manager's users,
                        the connecting identity's (an admin), auth on
    keeps_users         whether an etcd gets users at all: https:// only
    auth_table          the users (with roles) and roles (with permissions) etcd
                        holds now, for ``kubeless user ls`` and the tests

Every call converges (re-running it after a crash or on an existing user does
nothing more) and needs a ``root`` identity (a manager or an admin): a node's
own certificate gets ``Forbidden``. etcd's auth calls are not KV transactions
(there is nothing to compare): that is the one exception to "every write is a
transaction comparing what it read" in kubeless, and why each is idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kubeless.store import Etcd, Keyspace
from kubeless.store.auth import ROOT, Auth, Permission

from . import identities, permissions
from .identities import Identity

log = logging.getLogger(__name__)


def keeps_users(etcd: Etcd) -> bool:
    """Whether kubeless keeps etcd users on this etcd: with TLS (a verified common name
    is what etcd's user is); a plain http etcd has no identities, and auth stays off."""
    return etcd.tls is not None and all(ep.scheme == "https" for ep in etcd.endpoints)


async def admit(etcd: Etcd, keys: Keyspace, who: Identity) -> None:
    """The etcd user of ``who`` with exactly its roles (a node's own role first)."""
    auth = Auth(etcd)
    for role, perms in permissions.roles_for(keys, who).items():
        await auth.ensure_role(role, perms)
    grant = permissions.user_grant(who)
    await auth.ensure_user(grant.user)
    await auth.ensure_user_roles(grant.user, grant.roles)


async def admit_user(etcd: Etcd, keys: Keyspace, common_name: str) -> None:
    """``admit`` for a common name; a name that is not a kubeless identity (an external
    etcd's own admin certificate, say) becomes a root user: whoever set etcd up holds it."""
    try:
        who = identities.parse_identity(common_name)
    except identities.IdentityError:
        auth = Auth(etcd)
        await auth.ensure_user(common_name)
        await auth.ensure_user_roles(common_name, [ROOT])
        return
    await admit(etcd, keys, who)


async def admit_node(etcd: Etcd, keys: Keyspace, node_id: str, role: str) -> None:
    """Node ``node_id``'s users for its role: ``node:<id>``, and ``manager:<id>`` only
    while it is a manager (a demoted node's manager user goes, with its root)."""
    await admit(etcd, keys, identities.node(node_id))
    manager = identities.manager(node_id)
    if role == "manager":
        await admit(etcd, keys, manager)
    else:
        await Auth(etcd).remove_user(permissions.user_name(manager))


async def remove_node(etcd: Etcd, node_id: str) -> None:
    """Node ``node_id``'s users and role deleted: its certificates stop working."""
    auth = Auth(etcd)
    await auth.remove_user(permissions.user_name(identities.manager(node_id)))
    await auth.remove_user(permissions.user_name(identities.node(node_id)))
    await auth.remove_role(permissions.node_role_name(node_id))


async def enable_auth(etcd: Etcd, keys: Keyspace, users: Iterable[str]) -> None:
    """``root``, the users of the common names ``users`` (the one connecting among
    them: it must keep its access), then auth on. Idempotent."""
    auth = Auth(etcd)
    await auth.ensure_root()
    for common_name in users:
        await admit_user(etcd, keys, common_name)
    await auth.enable()


async def enable_for_node(etcd: Etcd, keys: Keyspace, node_id: str) -> None:
    """``enable_auth`` as ``init`` and ``up`` run it on a TLS etcd: the first manager's
    ``node:`` and ``manager:`` users, and the one whose identity made the cluster."""
    await enable_auth(etcd, keys, [identities.node(node_id).common_name,
                                   identities.manager(node_id).common_name,
                                   *connecting_user(etcd)])


def connecting_user(etcd: Etcd) -> list[str]:
    """The etcd user of the certificate ``etcd`` connects with ([] without one)."""
    from .pki import cert_info

    if etcd.tls is None or etcd.tls.cert is None:
        return []
    try:
        return [cert_info(etcd.tls.cert.read_bytes()).common_name]
    except (OSError, ValueError):
        return []


async def auth_table(etcd: Etcd) -> tuple[dict[str, tuple[str, ...]],
                                          dict[str, frozenset[Permission]]]:
    """(user -> roles, role -> permissions) as etcd holds them."""
    auth = Auth(etcd)
    users = {name: tuple(await auth.user_roles(name) or ()) for name in await auth.users()}
    roles: dict[str, frozenset[Permission]] = {}
    for name in await auth.roles():
        role = await auth.role(name)
        if role is not None and name != ROOT:
            roles[name] = role.permissions
    return users, roles
