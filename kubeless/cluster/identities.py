"""Who a certificate says its holder is: the common names the cluster CA signs.

Every certificate's common name is namespaced by what its holder is:

    node:<id>        a node's agent (the node id, a DNS label)
    manager:<id>     a manager's controllers (the manager's node id)
    admin:<name>     a person or tool driving the cluster with the CLI

etcd maps a verified client certificate's common name to one of its own
users, so a name must never be one etcd gives a meaning to: the colon keeps
ours apart from etcd's (``root`` is etcd's superuser, and no namespaced name
can be ``root``), and the part after it refuses reserved words too
(``admin:root`` reads as root to a person). Pure functions, no cryptography:
``join`` checks a name before it makes a key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = ("node", "manager", "admin")
# Names etcd or a reader would take for something else: etcd's superuser and role,
# and words that read as "everyone" or "nobody".
RESERVED = frozenset({"root", "etcd", "admin", "system", "anonymous", "guest", "nobody", "all",
                      "everyone", "kubeless"})
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_RULE = ("use lowercase letters, digits and '-', starting and ending with a letter or digit, "
         "at most 63 characters")


class IdentityError(ValueError):
    """A common name that is not a valid kubeless identity (one sentence, for the user)."""


@dataclass(frozen=True)
class Identity:
    """A holder of a certificate: its kind (node, manager, admin) and name."""

    kind: str
    name: str

    @property
    def common_name(self) -> str:
        return f"{self.kind}:{self.name}"

    def __str__(self) -> str:
        return self.common_name


def identity_error(kind: str, name: str) -> str | None:
    """Why ``kind``/``name`` cannot be an identity, or None."""
    if kind not in KINDS:
        return f"{kind!r} is not a kind of identity: use {', '.join(KINDS)}"
    if not _NAME.match(name):
        return f"{name!r} is not a valid {kind} name: {_RULE}"
    if name in RESERVED:
        return f"{name!r} is a reserved name and cannot be a {kind} identity"
    return None


def identity(kind: str, name: str) -> Identity:
    """The identity ``kind:name``; ``IdentityError`` when it is not a valid one."""
    error = identity_error(kind, name)
    if error is not None:
        raise IdentityError(error)
    return Identity(kind, name)


def node(node_id: str) -> Identity:
    return identity("node", node_id)


def manager(node_id: str) -> Identity:
    return identity("manager", node_id)


def admin(name: str) -> Identity:
    return identity("admin", name)


def parse_identity(common_name: str) -> Identity:
    """``node:n1`` -> Identity("node", "n1"); ``IdentityError`` for anything else
    (a name without a kind, such as etcd's ``root``, is not ours)."""
    kind, colon, name = common_name.partition(":")
    if not colon:
        raise IdentityError(f"{common_name!r} is not a kubeless identity: expected "
                            f"<kind>:<name> with kind {', '.join(KINDS)}")
    return identity(kind, name)
