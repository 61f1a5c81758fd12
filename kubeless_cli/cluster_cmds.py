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
(``http://``, ``https://``) is etcd itself.

``init`` and ``join`` on an etcd without TLS (http://) are refused unless the
user says ``--insecure`` (``up_tls.choose_node_transport``, ``up``'s words);
the node's state remembers it, and each restart warns again. ``init`` on
https:// etcd makes the cluster with the CA the state dir already holds
(``kubeless certs ca``, which etcd's certificates come from:
``kubeless_cli.certs_cmds``) and the identity given (``--cacert/--cert/--key``
or ``KUBELESS_CERT_PATH``, e.g. ``kubeless certs admin``'s).

``join-token`` reads the plain tokens from etcd (``bootstrap.current_token``;
a manager's state dir for a cluster made before etcd kept them) and the join
endpoints the managers' heartbeats advertise (``renewal.find_join_endpoints``),
so it prints the complete ``kubeless join --token T HOST:PORT`` on any host
with a manager or admin identity.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from collections.abc import Callable
from typing import Any

import click

from kubeless_cli.cert_expiry import cert_expiry_option
from kubeless_cli.context import CliError, Context, pass_context
from kubeless_cli.flags import flag
from kubeless_cli.node_state import (cluster_call, explicit, explicit_endpoints, new_node_state,
                                     node_options, overridden, save_init, where)
from kubeless_cli.up_tls import Transport, choose_node_transport
from kubeless.cluster import DEFAULT_STATE_DIR, ClusterError, NodeState, StateDir
from kubeless.cluster.bootstrap import ClusterCA
from kubeless.cluster.record import DEFAULT_CERT_EXPIRY

NO_TLS_NOTE = ("Note: the connection to etcd is plain http, NO TLS (--insecure): it is neither "
               "encrypted nor authenticated; anyone who can reach etcd can read and change this "
               "cluster.")


def insecure_option() -> Callable[[Any], Any]:
    return flag("--insecure", help="Accept an etcd without TLS (http://): anyone who reaches "
                "it can read and write the cluster. Remembered in --state-dir.")


def warn(transport: Transport) -> None:
    """The plain-etcd warning, on stderr at start."""
    if transport.warning:
        click.echo(transport.warning, err=True)


def transport_note(endpoints: str) -> str:
    """What a node started on ``endpoints`` should know about its connection to etcd."""
    if endpoints.startswith("https://"):
        return ("etcd is reached over TLS with this node's certificate; etcd's auth lets "
                "it reach only what its role allows.")
    return NO_TLS_NOTE


# -- join commands ---------------------------------------------------------------------

def join_command(prefix: str, token: str, endpoints: str) -> str:
    from kubeless.store import DEFAULT_PREFIX

    global_opts = "" if prefix.strip("/") == DEFAULT_PREFIX.strip("/") else f" --prefix {prefix}"
    plain = "" if endpoints.startswith("https://") else " --insecure"  # the cluster's choice
    return f"kubeless{global_opts} join --token {token} {endpoints}{plain}"


def print_join(role: str, command: str) -> None:
    click.echo(f"To add a {role} to this cluster, run the following command:\n\n"
               f"    {command}\n")


def local_join_address(node: NodeState | None, state: StateDir) -> str | None:
    """``HOST:PORT`` of ``node``'s join endpoint, when it serves one (a manager with a
    join port and the CA key)."""
    from kubeless.cluster.join_client import join_address

    if node is None or not node.join_port or node.role != "manager" or not state.has_ca_key():
        return None
    return join_address(node.advertise_addr, node.join_port)


def endpoint_join_command(token: str, address: str) -> str:
    return f"kubeless join --token {token} {address}"


def print_endpoint_joins(commands: list[tuple[str, str]], alone: bool = False) -> None:
    """The join-endpoint forms ((role, command), ...), after the etcd ones or ``alone``
    (the node gets its certificate)."""
    if not commands:
        return
    click.echo(("Through" if alone else "Or through") + " a manager's join endpoint (the "
               "token pins the cluster's CA; the node receives its certificate and the etcd "
               "endpoints):\n")
    for role, command in commands:
        click.echo(f"    {command}    (a {role})")
    click.echo("")


# -- init -----------------------------------------------------------------------------

@click.command()
@node_options
@cert_expiry_option()
@insecure_option()
@pass_context
def init(ctx: Context, /, state_dir: str, cert_expiry: float | None, insecure: bool,
         **opts: Any) -> None:
    """Make a new cluster in the etcd given, then run this host as its first manager.

    Writes the cluster record (id, the root CA certificate, join-token hashes)
    and the plain tokens under the prefix and refuses when a record is there
    already; prints the join commands for workers and managers; keeps the
    node's identity and the CA key in --state-dir; then runs the agent and
    the controllers in the foreground until Ctrl-C. When the state dir
    already holds a node, that node starts again instead (no new cluster).

    On https:// etcd the cluster CA is the one --state-dir holds (`kubeless
    certs ca`, which signed etcd's certificates: `kubeless certs etcd`), and
    init connects with --cacert/--cert/--key or KUBELESS_CERT_PATH (`kubeless
    certs admin`). An http:// etcd is refused unless --insecure.
    """
    state = StateDir(state_dir)
    if cluster_call(state.has_node):
        restart(ctx, state, opts, "init", insecure=insecure)
        return
    from kubeless.cluster import bootstrap

    endpoints = explicit_endpoints(ctx) or ctx.endpoints
    transport = choose_node_transport(endpoints, insecure=insecure, remembered=False,
                                      verb="init")
    ca = cluster_ca(ctx, state, transport.tls)
    node = replace(new_node_state(ctx, endpoints, opts, "manager"), insecure=not transport.tls)
    here = where(endpoints, ctx.prefix)
    ctx = replace(ctx, endpoints=endpoints)
    from kubeless_cli.node_process import check_runtime, node_resource

    asyncio.run(check_runtime(node, state))

    async def make(rstore: Any) -> tuple[Any, dict[str, str]]:
        from kubeless.cluster import access

        result: tuple[Any, dict[str, str]] = await bootstrap.create_cluster(
            rstore, state, node_resource(node, "manager"), here,
            cert_expiry=cert_expiry or DEFAULT_CERT_EXPIRY, ca=ca)
        if transport.tls:  # etcd's auth on: root, this node's users, the one running init
            await access.enable_for_node(rstore.etcd, rstore.keys, node.node_id)
        return result

    record, tokens = cluster_call(lambda: ctx.run(make))
    warn(transport)  # once the cluster is made: a refusal stays one line
    node = replace(node, cluster_id=record.id, joined_at=record.created_at)
    cluster_call(lambda: save_init(state, node, tokens))
    from kubeless.cluster.join_server import issue_own_identities

    cluster_call(lambda: issue_own_identities(state, node.node_id, node.advertise_addr,
                                              "manager", record.cert_expiry))
    security = "TLS" if transport.tls else "plain http, NO TLS"
    click.echo(f"Cluster initialized: current node ({node.node_id}) is now a manager.\n"
               f"  cluster id   {record.id}\n  etcd         {endpoints} (prefix {ctx.prefix}; "
               f"{security})\n"
               f"  state dir    {state} (node identity, CA key, plain join tokens: keep it "
               "private)\n")
    address = local_join_address(node, state)
    if not transport.tls or address is None:  # a host needs a certificate for TLS etcd
        for role in ("worker", "manager"):
            print_join(role, join_command(ctx.prefix, tokens[role], endpoints))
    if address is not None:
        print_endpoint_joins([(role, endpoint_join_command(tokens[role], address))
                              for role in ("worker", "manager")], alone=transport.tls)
    click.echo(f"{transport_note(endpoints)}\n\nThis node restarts with "
               f"`kubeless join --state-dir {state}`."
               "\nRunning its agent and controllers in the foreground; Ctrl-C stops them.",
               nl=True)
    foreground(node, state, manager=True)


def cluster_ca(ctx: Context, state: StateDir, tls: bool) -> ClusterCA | None:
    """The CA a new cluster is made with: the one the state dir holds (``kubeless certs
    ca``), else None (``create_cluster`` makes one). On TLS etcd it must be held, and be
    the CA that signed etcd's certificates (the node's own come from it)."""
    from kubeless.cluster import bootstrap
    from kubeless.cluster.ca import cert_der

    held: ClusterCA | None = cluster_call(lambda: bootstrap.held_cluster_ca(state))
    if not tls:
        return held
    if held is None:
        raise CliError(f"the state dir {state} holds no cluster CA: on https:// etcd, make it "
                       f"before etcd's certificates with `kubeless certs ca --state-dir "
                       f"{state}`, then `kubeless certs etcd` (see `kubeless certs --help`)")
    tls_files = ctx.tls()
    if tls_files is None or tls_files.cacert is None:
        raise CliError("https:// endpoints need the CA that signed etcd's certificates: "
                       "--cacert FILE or KUBELESS_CERT_PATH=DIR (`kubeless certs admin`)")
    try:
        given = cert_der(tls_files.cacert.read_text())
    except (OSError, ClusterError) as err:
        raise CliError(f"cannot read the CA certificate {tls_files.cacert}: {err}") from None
    if given != cert_der(held.cert_pem):
        raise CliError(f"the CA certificate {tls_files.cacert} is not the cluster CA in "
                       f"{state} (ca.crt): etcd's certificates must come from it (`kubeless "
                       "certs etcd`), or the nodes' certificates would not be trusted")
    return held


def foreground(node: NodeState, state: StateDir, *, manager: bool) -> None:
    from kubeless_cli.node_process import NodeProcess

    NodeProcess(node, state, manager=manager).run_in_foreground()


def restart(ctx: Context, state: StateDir, opts: dict[str, Any], verb: str,
            endpoints: str | None = None, insecure: bool = False) -> None:
    """Start the node the state dir holds again: same cluster, no token; a plain etcd
    accepted before (``--insecure``, or a state dir older than that flag) stays accepted."""
    from kubeless.cluster import bootstrap

    stored = cluster_call(state.load_node)
    node = overridden(stored, opts, endpoints or explicit_endpoints(ctx), explicit(ctx, "prefix"))
    transport = choose_node_transport(
        node.endpoints, insecure=insecure, verb=verb,
        remembered=stored.insecure or not stored.endpoints.startswith("https://"))
    node = replace(node, insecure=not transport.tls)
    here = where(node.endpoints, node.prefix)

    async def check(rstore: Any) -> dict[str, Any] | None:
        _, resource = await bootstrap.resume_node(rstore, state, node, here)
        return resource

    resource = None
    base = replace(ctx, endpoints=node.endpoints, prefix=node.prefix)
    manager_ctx = own_identity(base, node, state.manager_tls_dir)
    if manager_ctx is not base:  # a manager's identity sees its Node (etcd's root role)
        from kubeless.store import Forbidden

        try:
            resource = cluster_call(lambda: manager_ctx.run(check))
        except Forbidden:  # demoted: etcd deleted manager:<id>
            resource = None
    if resource is None:
        node_ctx = own_identity(base, node, state.tls_dir)
        resource = cluster_call(lambda: node_ctx.run(check))
        if resource is None and promoted(node_ctx, node, state):
            resource = cluster_call(lambda: own_identity(base, node,
                                                         state.manager_tls_dir).run(check))
    warn(transport)
    if node != stored:
        cluster_call(lambda: state.save_node(node))
    # a node's own identity may not read its Node (etcd's auth): it runs as a worker
    role = (resource or {}).get("spec", {}).get("role", "worker")
    click.echo(f"{verb}: the state dir {state} holds node {node.node_id} of cluster "
               f"{node.cluster_id}; starting it again as a {role} ({here}).")
    foreground(node, state, manager=role == "manager")


# -- join -----------------------------------------------------------------------------

@click.command()
@click.option("--token", help="The join token (`kubeless join-token worker|manager` prints it). "
              "Without it, the node in --state-dir starts again.")
@click.argument("endpoints", required=False)
@node_options
@insecure_option()
@pass_context
def join(ctx: Context, /, token: str | None, endpoints: str | None, state_dir: str,
         insecure: bool, **opts: Any) -> None:
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
    join` with no token starts that node again. An http:// etcd given
    directly is refused unless --insecure.
    """
    state = StateDir(state_dir)
    has_node = cluster_call(state.has_node)
    if token is None:
        if not has_node:
            raise CliError(f"no --token given and the state dir {state} holds no node: join "
                           "with `kubeless join --token TOKEN ENDPOINTS`")
        restart(ctx, state, opts, "join", endpoints, insecure)
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
    transport = choose_node_transport(endpoints, insecure=insecure, remembered=False,
                                      verb="join")
    base = replace(new_node_state(ctx, endpoints, opts, "worker"), insecure=not transport.tls)
    rctx = replace(ctx, endpoints=endpoints)
    here = where(endpoints, ctx.prefix)

    async def register(rstore: Any) -> tuple[Any, str]:
        result: tuple[Any, str] = await bootstrap.join_cluster(
            rstore, token, lambda role: node_resource(base, role), here)
        return result

    asyncio.run(check_runtime(base, state))
    record, role = cluster_call(lambda: rctx.run(register))
    warn(transport)
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
    # the cluster's own choice of transport (a plain etcd was accepted at its init)
    transport = choose_node_transport(joined.endpoints, insecure=False, remembered=True,
                                      verb="join")
    node = replace(base, cluster_id=joined.cluster_id, role=joined.role,
                   endpoints=joined.endpoints, prefix=joined.prefix, joined_at=now_rfc3339(),
                   insecure=not transport.tls)
    warn(transport)
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
              show_default=True, help="A manager's state dir: its etcd, prefix and identity "
              "when no others are given [env KUBELESS_STATE_DIR].")
@pass_context
def join_token(ctx: Context, role: str, rotate: bool, quiet: bool, state_dir: str) -> None:
    """Print the command that joins a ROLE (worker or manager) to this cluster.

    Works on any host with a manager or admin identity (KUBELESS_CERT_PATH or
    --cacert/--cert/--key for https:// etcd), or in a manager's --state-dir,
    whose etcd, prefix and manager identity it then uses. The plain tokens
    are read from etcd (beside the record's hashes; a cluster made before etcd
    kept them falls back on the state dir of the manager that ran `init`),
    and the join endpoints from the managers' heartbeats. --rotate makes a
    new token (the old one is refused from then on).
    """
    from kubeless.cluster import bootstrap
    from kubeless.cluster.join_client import join_address
    from kubeless.cluster.renewal import find_join_endpoints

    state = StateDir(state_dir)
    held = cluster_call(state.load_node) if cluster_call(state.has_node) else None
    endpoints = explicit_endpoints(ctx) or (held.endpoints if held else ctx.endpoints)
    prefix = explicit(ctx, "prefix") or (held.prefix if held else ctx.prefix)
    rctx = own_identity(replace(ctx, endpoints=endpoints, prefix=prefix), held,
                        state.manager_tls_dir)
    here = where(endpoints, prefix)

    async def get(rstore: Any) -> tuple[str, str, list[tuple[str, int]]]:
        if rotate:
            record, new = await bootstrap.rotate_token(rstore, role, here)
            if held is not None and held.cluster_id == record.id:
                state.save_token(role, str(new))
            token, cluster_id = str(new), record.id
        else:
            found = await bootstrap.read_record(rstore)
            if found is None:
                raise ClusterError(f"{here} holds no cluster: run `kubeless init` first")
            mine = held is None or held.cluster_id == found.record.id
            token = await bootstrap.current_token(rstore, found, state if mine else None, role)
            cluster_id = found.record.id
        return token, cluster_id, await find_join_endpoints(rstore)

    token, cluster_id, served = cluster_call(lambda: rctx.run(get))
    if quiet:
        click.echo(token)
        return
    if rotate:
        click.echo(f"Successfully rotated {role} join token.\n")
    local = local_join_address(held, state) \
        if held is not None and held.cluster_id == cluster_id else None
    addresses = list(dict.fromkeys(
        [a for a in (local, *(join_address(host, port) for host, port in served)) if a]))
    # A host joining a TLS etcd directly would need a certificate it does not have yet:
    # there the join endpoint, which issues one, is the way in.
    direct = not addresses or not endpoints.startswith("https://")
    if direct:
        print_join(role, join_command(prefix, token, endpoints))
    print_endpoint_joins([(role, endpoint_join_command(token, a)) for a in addresses],
                         alone=not direct)


def promoted(ctx: Context, node: NodeState, state: StateDir) -> bool:
    """Whether this node, which may not read its own Node (etcd's auth), was promoted:
    it asks the join endpoints the managers advertise for its manager identity (``POST
    /promote``, with its node certificate); True once it holds it."""
    from kubeless.cluster import join_client, renewal
    from kubeless.cluster.errors import JoinFailed
    from kubeless.store import StoreError

    try:
        found = ctx.run(renewal.find_join_endpoints)
    except StoreError:  # this identity may not list them
        return False
    for host, port in found:
        try:
            return join_client.post_promote(host, port, state, node.node_id)
        except JoinFailed as err:
            click.echo(f"warning: {err}", err=True)
    return False


def own_identity(ctx: Context, node: NodeState | None, directory: Path) -> Context:
    """``ctx`` with the identity in ``directory`` (a node's ``tls/``, a manager's
    ``manager-tls/``) when no TLS files were given and ``ctx`` reaches ``node``'s
    https:// etcd."""
    given = (ctx.cacert, ctx.cert, ctx.key, ctx.cert_path)
    if node is None or any(given) or ctx.endpoints != node.endpoints \
            or not node.endpoints.startswith("https://") \
            or not (directory / "cert.pem").is_file():
        return ctx
    return replace(ctx, cert_path=str(directory))
