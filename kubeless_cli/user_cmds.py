"""``kubeless user``: etcd's users of a cluster with auth on (ls, add, rm).

etcd names a user by a certificate's common name (``kubeless.cluster.permissions``
has the table: ``admin:`` and ``manager:`` hold etcd's root role, each ``node:<id>``
a role of its own). Nodes' users are kept by the join endpoint and ``node
promote|demote|rm``; this command adds and removes admins (``kubeless certs admin
NAME`` makes the certificate, on a host holding the CA, and cannot reach etcd),
and lists everything. Only an admin or manager identity may run it; anyone else
gets etcd's refusal as one line.
"""

from __future__ import annotations

from typing import Any

import click

from kubeless_cli.context import USAGE, CliError, Context, pass_context
from kubeless_cli.printers import format_rows


@click.group()
def user() -> None:
    """etcd's users (a certificate's common name is its user): ls, add, rm."""


def _admin_name(name: str) -> str:
    from kubeless.cluster.identities import IdentityError, parse_identity

    try:
        who = parse_identity(name)
    except IdentityError as err:
        raise CliError(str(err), USAGE) from None
    if who.kind != "admin":
        raise CliError(f"{name} is a {who.kind} identity: nodes and managers are let in by "
                       "the join endpoint and `kubeless node promote|demote|rm`; add "
                       "admin:NAME here", USAGE)
    return who.common_name


@user.command("ls")
@pass_context
def ls(ctx: Context) -> None:
    """Every etcd user with its roles, and each role's permissions."""
    from kubeless.cluster import access

    async def run(rstore: Any) -> Any:
        return await access.auth_table(rstore.etcd)

    users, roles = ctx.run(run)
    rows = [[name, ",".join(held) or "-",
             "; ".join(str(p) for p in sorted(roles.get(held[0], ()))) if len(held) == 1
             and held[0] in roles else ("everything" if "root" in held else "-")]
            for name, held in sorted(users.items())]
    click.echo(format_rows(["USER", "ROLES", "PERMISSIONS"], rows), nl=False)


@user.command("add")
@click.argument("name")
@pass_context
def add(ctx: Context, name: str) -> None:
    """Let admin:NAME's certificate in (etcd's root role)."""
    from kubeless.cluster import access, identities

    common_name = _admin_name(name)

    async def run(rstore: Any) -> None:
        await access.admit(rstore.etcd, rstore.keys, identities.parse_identity(common_name))

    ctx.run(run)
    click.echo(common_name)


@user.command("rm")
@click.argument("name")
@pass_context
def rm(ctx: Context, name: str) -> None:
    """Refuse admin:NAME's certificate from its next request on."""
    from kubeless.store.auth import Auth

    common_name = _admin_name(name)

    async def run(rstore: Any) -> bool:
        return await Auth(rstore.etcd).remove_user(common_name)

    if not ctx.run(run):
        raise CliError(f"etcd has no user {common_name}")
    click.echo(common_name)
