"""``kubeless init``, ``join`` and ``join-token``: make a cluster, add nodes, run them.

``init`` makes a cluster in the etcd given (``kubeless.cluster.bootstrap``),
prints the join commands as ``docker swarm init`` does, and runs this host
as the first manager in the foreground. ``join`` checks a token, registers
the node with the role it grants, and runs it the same way. Both keep the
node's identity in its state dir; with no token, either starts that node
again from there (its stored endpoints, prefix and options; flags given
again override them).

The foreground part is ``kubeless_cli.node_process.NodeProcess``: the
agent and, on a manager, the controllers; SIGINT or SIGTERM stops both
(the agent leaves its heartbeat to its TTL, marked stopped, so a restart
within it adopts everything; the controllers resign). Leaving on purpose
is ``kubeless node leave`` (``kubeless_cli.leave_cmd``).

A manager also serves a join endpoint (``--join-port``, 2377 by default,
0: none; ``kubeless.cluster.join_server``) when it holds the CA key (the
one that ran ``init``, and managers that joined through an endpoint):
``kubeless join --token T HOST:PORT`` (no scheme) joins through it, pins the
cluster's CA by the token's digest and receives its certificate and the
etcd endpoints (``kubeless.cluster.join_client``). An address with a scheme
(``http://``, ``https://``) is etcd itself, as before.

Not implemented yet (a later issue): transport security. etcd is reached
without TLS or per-node credentials, so anyone who can reach etcd can read
and write the cluster; tokens only gate ``join``, and the certificates a
join endpoint issues are not used yet.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import click

from kubeless_cli.cert_expiry import cert_expiry_option
from kubeless_cli.context import CliError, Context, pass_context
from kubeless_cli.flags import flag
from kubeless_cli.node_state import (cluster_call, explicit, explicit_endpoints, new_node_state,
                                     node_options, overridden, save_init, where)
from kubeless.cluster import DEFAULT_STATE_DIR, ClusterError, NodeState, StateDir
from kubeless.cluster.record import DEFAULT_CERT_EXPIRY

NO_TLS_NOTE = ("Note: the connection to etcd is neither encrypted nor authenticated yet (a later "
               "issue); anyone who can reach etcd can read and change this cluster.")


def transport_note(endpoints: str) -> str:
    """What a node started on ``endpoints`` should know about its connection to etcd."""
    if endpoints.startswith("https://"):
        return ("etcd is reached over TLS with this node's certificate (per-identity etcd "
                "permissions are a later issue).")
    return NO_TLS_NOTE


# -- join commands ---------------------------------------------------------------------

def join_command(prefix: str, token: str, endpoints: str) -> str:
    from kubeless.store import DEFAULT_PREFIX

    global_opts = "" if prefix.strip("/") == DEFAULT_PREFIX.strip("/") else f" --prefix {prefix}"
    return f"kubeless{global_opts} join --token {token} {endpoints}"


def print_join(role: str, command: str) -> None:
    click.echo(f"To add a {role} to this cluster, run the following command:\n\n"
               f"    {command}\n")


def endpoint_join_command(token: str, node: NodeState | None, state: StateDir) -> str | None:
    """The join command through ``node``'s join endpoint, when it serves one (a manager
    with a join port and the CA key)."""
    if node is None or not node.join_port or node.role != "manager" or not state.has_ca_key():
        return None
    host = f"[{node.advertise_addr}]" if ":" in node.advertise_addr else node.advertise_addr
    return f"kubeless join --token {token} {host}:{node.join_port}"


def print_endpoint_joins(commands: dict[str, str | None], alone: bool = False) -> None:
    """The join-endpoint forms, after the etcd ones or ``alone`` (the node gets its
    certificate)."""
    given = {role: c for role, c in commands.items() if c}
    if not given:
        return
    click.echo(("Through" if alone else "Or through") + " this manager's join endpoint (the "
               "token pins the cluster's CA; the node receives its certificate and the etcd "
               "endpoints):\n")
    for role, command in given.items():
        click.echo(f"    {command}    (a {role})")
    click.echo("")


# -- init -----------------------------------------------------------------------------

@click.command()
@node_options
@cert_expiry_option()
@pass_context
def init(ctx: Context, /, state_dir: str, cert_expiry: float | None, **opts: Any) -> None:
    """Make a new cluster in the etcd given, then run this host as its first manager.

    Writes the cluster record (id, a root CA certificate, join-token hashes)
    under the prefix and refuses when one is there already; prints the join
    commands for workers and managers; keeps the node's identity, the CA key
    and the plain tokens in --state-dir; then runs the agent and the
    controllers in the foreground until Ctrl-C. When the state dir already
    holds a node, that node starts again instead (no new cluster).

    Not implemented yet: TLS to etcd and per-node credentials.
    """
    state = StateDir(state_dir)
    if cluster_call(state.has_node):
        restart(ctx, state, opts, "init")
        return
    from kubeless.cluster import bootstrap

    endpoints = explicit_endpoints(ctx) or ctx.endpoints
    node = new_node_state(ctx, endpoints, opts, "manager")
    here = where(endpoints, ctx.prefix)
    ctx = replace(ctx, endpoints=endpoints)
    from kubeless_cli.node_process import check_runtime, node_resource

    asyncio.run(check_runtime(node, state))

    async def make(rstore: Any) -> tuple[Any, dict[str, str]]:
        result: tuple[Any, dict[str, str]] = await bootstrap.create_cluster(
            rstore, state, node_resource(node, "manager"), here,
            cert_expiry=cert_expiry or DEFAULT_CERT_EXPIRY)
        return result

    record, tokens = cluster_call(lambda: ctx.run(make))
    node = replace(node, cluster_id=record.id, joined_at=record.created_at)
    cluster_call(lambda: save_init(state, node, tokens))
    from kubeless.cluster.join_server import issue_own_identities

    cluster_call(lambda: issue_own_identities(state, node.node_id, node.advertise_addr,
                                              "manager", record.cert_expiry))
    click.echo(f"Cluster initialized: current node ({node.node_id}) is now a manager.\n"
               f"  cluster id   {record.id}\n  etcd         {endpoints} (prefix {ctx.prefix})\n"
               f"  state dir    {state} (node identity, CA key, plain join tokens: keep it "
               "private)\n")
    for role in ("worker", "manager"):
        print_join(role, join_command(ctx.prefix, tokens[role], endpoints))
    print_endpoint_joins({role: endpoint_join_command(tokens[role], node, state)
                          for role in ("worker", "manager")})
    click.echo(f"{transport_note(endpoints)}\n\nThis node restarts with "
               f"`kubeless join --state-dir {state}`."
               "\nRunning its agent and controllers in the foreground; Ctrl-C stops them.",
               nl=True)
    foreground(node, state, manager=True)


def foreground(node: NodeState, state: StateDir, *, manager: bool) -> None:
    from kubeless_cli.node_process import NodeProcess

    NodeProcess(node, state, manager=manager).run_in_foreground()


def restart(ctx: Context, state: StateDir, opts: dict[str, Any], verb: str,
            endpoints: str | None = None) -> None:
    """Start the node the state dir holds again: same cluster, no token."""
    from kubeless.cluster import bootstrap

    stored = cluster_call(state.load_node)
    node = overridden(stored, opts, endpoints or explicit_endpoints(ctx), explicit(ctx, "prefix"))
    rctx = replace(ctx, endpoints=node.endpoints, prefix=node.prefix)
    if rctx.tls() is None and (state.tls_dir / "cert.pem").is_file() \
            and node.endpoints.startswith("https://"):
        rctx = replace(rctx, cert_path=str(state.tls_dir))  # the node checks in as itself
    here = where(node.endpoints, node.prefix)

    async def check(rstore: Any) -> dict[str, Any]:
        _, resource = await bootstrap.resume_node(rstore, state, node, here)
        return resource

    resource = cluster_call(lambda: rctx.run(check))
    if node != stored:
        cluster_call(lambda: state.save_node(node))
    role = resource["spec"].get("role", "worker")
    click.echo(f"{verb}: the state dir {state} holds node {node.node_id} of cluster "
               f"{node.cluster_id}; starting it again as a {role} ({here}).")
    foreground(node, state, manager=role == "manager")


# -- join -----------------------------------------------------------------------------

@click.command()
@click.option("--token", help="The join token (`kubeless join-token worker|manager` prints it). "
              "Without it, the node in --state-dir starts again.")
@click.argument("endpoints", required=False)
@node_options
@pass_context
def join(ctx: Context, /, token: str | None, endpoints: str | None, state_dir: str,
         **opts: Any) -> None:
    """Join the cluster at ENDPOINTS and run this node in the foreground.

    ENDPOINTS with a scheme (http://HOST:2379,...) is the cluster's etcd, as
    before. Without one, HOST[:PORT] is a manager's join endpoint (port 2377
    by default): the CA it serves must match the digest in the token, the
    node makes its own key and receives its certificate (in --state-dir's
    tls/), the etcd endpoints and prefix; a manager also receives its
    manager identity and the CA key.

    The token decides the role (worker or manager; a manager also runs the
    controllers). A wrong, rotated or foreign token is refused and nothing
    is registered. The node's identity is kept in --state-dir; `kubeless
    join` with no token starts that node again.

    Not implemented yet: TLS to etcd and per-node credentials; the token
    only gates registration.
    """
    state = StateDir(state_dir)
    has_node = cluster_call(state.has_node)
    if token is None:
        if not has_node:
            raise CliError(f"no --token given and the state dir {state} holds no node: join "
                           "with `kubeless join --token TOKEN ENDPOINTS`")
        restart(ctx, state, opts, "join", endpoints)
        return
    if has_node:
        held = cluster_call(state.load_node)
        raise CliError(f"the state dir {state} already holds node {held.node_id} of cluster "
                       f"{held.cluster_id}: it starts again with `kubeless join --state-dir "
                       f"{state}` (no token); to join anew, use another --state-dir")
    if endpoints is not None and is_join_address(endpoints):
        join_through_endpoint(ctx, state, token, endpoints, opts)
        return
    from kubeless.cluster import bootstrap
    from kubeless_cli.node_process import check_runtime, node_resource

    endpoints = endpoints or explicit_endpoints(ctx) or ctx.endpoints
    base = new_node_state(ctx, endpoints, opts, "worker")
    rctx = replace(ctx, endpoints=endpoints)
    here = where(endpoints, ctx.prefix)

    async def register(rstore: Any) -> tuple[Any, str]:
        result: tuple[Any, str] = await bootstrap.join_cluster(
            rstore, token, lambda role: node_resource(base, role), here)
        return result

    asyncio.run(check_runtime(base, state))
    record, role = cluster_call(lambda: rctx.run(register))
    from kubeless.store import now_rfc3339

    node = replace(base, cluster_id=record.id, role=role, joined_at=now_rfc3339())
    cluster_call(lambda: state.save_node(node))
    click.echo(f"This node ({node.node_id}) joined cluster {record.id} as a {role}.\n"
               f"State dir: {state}; it restarts with `kubeless join --state-dir {state}`.\n"
               f"{transport_note(node.endpoints)}")
    foreground(node, state, manager=role == "manager")


def is_join_address(text: str) -> bool:
    from kubeless.cluster.join_client import is_join_address as schemeless

    return schemeless(text)


def join_through_endpoint(ctx: Context, state: StateDir, token: str, address: str,
                          opts: dict[str, Any]) -> None:
    """``kubeless join --token T HOST:PORT``: join through a manager's join endpoint."""
    import socket

    from kubeless.cluster import join_client
    from kubeless.cluster.identities import identity_error
    from kubeless.store import now_rfc3339
    from kubeless_cli.node_process import check_runtime

    base = new_node_state(ctx, f"http://{address}", opts, "worker")
    problem = identity_error("node", base.node_id)
    if problem is not None:
        raise CliError(f"--node-name: {problem}")
    asyncio.run(check_runtime(base, state))
    request = join_client.NodeRequest(base.node_id, base.advertise_addr, base.runtime,
                                      base.labels, socket.gethostname())
    joined = cluster_call(lambda: join_client.join_through(address, token, request))
    node = replace(base, cluster_id=joined.cluster_id, role=joined.role,
                   endpoints=joined.endpoints, prefix=joined.prefix, joined_at=now_rfc3339())
    cluster_call(lambda: join_client.save_identity(state, joined))
    cluster_call(lambda: state.save_node(node))
    click.echo(f"This node ({node.node_id}) joined cluster {joined.cluster_id} as a "
               f"{joined.role} through the join endpoint at {address}.\n"
               f"Its identity: {state.tls_dir} (KUBELESS_CERT_PATH layout)"
               + (f"; its manager identity: {state.manager_tls_dir}; the CA key: "
                  f"{state.path / 'ca.key'}" if joined.role == "manager" else "") + "\n"
               f"etcd: {node.endpoints} (prefix {node.prefix}).\n"
               f"State dir: {state}; it restarts with `kubeless join --state-dir {state}`.\n"
               f"{transport_note(node.endpoints)}")
    foreground(node, state, manager=joined.role == "manager")


# -- join-token -----------------------------------------------------------------------

@click.command("join-token")
@click.argument("role", type=click.Choice(["worker", "manager"]))
@flag("--rotate", help="Make a new token; the old one stops working.")
@flag("-q", "--quiet", help="Print the token only.")
@click.option("--state-dir", envvar="KUBELESS_STATE_DIR", default=DEFAULT_STATE_DIR,
              show_default=True, help="The manager's state dir, where plain tokens are kept.")
@pass_context
def join_token(ctx: Context, role: str, rotate: bool, quiet: bool, state_dir: str) -> None:
    """Print the command that joins a ROLE (worker or manager) to this cluster.

    etcd keeps only hashes of the tokens: the plain tokens are kept (mode
    0600) in the state dir of the manager that ran `init` or the last
    `--rotate`, and this prints them from there. --rotate makes a new
    token, stores its hash (the old token is refused from then on) and
    keeps the plain token in --state-dir when that holds this cluster's node.
    """
    from kubeless.cluster import bootstrap

    state = StateDir(state_dir)
    held = cluster_call(state.load_node) if cluster_call(state.has_node) else None
    endpoints = explicit_endpoints(ctx) or (held.endpoints if held else ctx.endpoints)
    prefix = explicit(ctx, "prefix") or (held.prefix if held else ctx.prefix)
    rctx = replace(ctx, endpoints=endpoints, prefix=prefix)
    here = where(endpoints, prefix)

    async def get(rstore: Any) -> tuple[str, bool, str]:
        if rotate:
            record, new = await bootstrap.rotate_token(rstore, role, here)
            mine = held is not None and held.cluster_id == record.id
            if mine:
                state.save_token(role, str(new))
            return str(new), mine, record.id
        found = await bootstrap.read_record(rstore)
        if found is None:
            raise ClusterError(f"{here} holds no cluster: run `kubeless init` first")
        return bootstrap.saved_token(state, found.record, role), True, found.record.id

    token, kept, cluster_id = cluster_call(lambda: rctx.run(get))
    if quiet:
        click.echo(token)
        return
    if rotate:
        click.echo(f"Successfully rotated {role} join token.\n")
    through_endpoint = endpoint_join_command(token, held, state) \
        if held is not None and held.cluster_id == cluster_id else None
    # A host joining a TLS etcd directly would need a certificate it does not have yet:
    # there the join endpoint, which issues one, is the way in.
    direct = through_endpoint is None or not endpoints.startswith("https://")
    if direct:
        print_join(role, join_command(prefix, token, endpoints))
    if through_endpoint is not None:
        print_endpoint_joins({role: through_endpoint}, alone=not direct)
    if not kept:
        click.echo(f"(not kept in {state}, which holds no node of this cluster: copy it now; "
                   "etcd keeps only its hash)")
