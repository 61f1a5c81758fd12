"""A node's state from the command line: what ``init``, ``join``, ``up`` and ``node leave`` share.

The agent's options as click flags (None when not given, so a restart keeps
the stored ones), the global options the user gave explicitly, a new
``NodeState`` from flags or a stored one with flags given again, and
bootstrap errors as one CLI line. The agent's config is built from that
state by the agent itself (``AgentConfig.from_node_state``).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import click

from kubeless_cli.context import CliError, Context
from kubeless.cluster import DEFAULT_STATE_DIR, ClusterError, NodeState, StateDir
from kubeless.cluster.state import DEFAULT_JOIN_PORT

RUNTIMES = ("docker", "process", "fake")


def node_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The agent's options; None when not given, so a restart keeps the stored ones."""
    for option in reversed([
        click.option("--node-name", help="Node id (default: the hostname as a DNS label)."),
        click.option("--advertise-addr", help="This node's address (default: the one it "
                     "reaches etcd from)."),
        click.option("--runtime", type=click.Choice(RUNTIMES), help="Task runtime "
                     "(default: docker)."),
        click.option("--labels", help="Node labels at registration, k=v,..."),
        click.option("--state-dir", envvar="KUBELESS_STATE_DIR", default=DEFAULT_STATE_DIR,
                     show_default=True, help="Where the node keeps its identity "
                     "[env KUBELESS_STATE_DIR]."),
        *metrics_options(),
        join_port_option(),
        *agent_service_options(),
    ]):
        fn = option(fn)
    return fn


def metrics_options(default_port: str = "none") -> list[Callable[..., Any]]:
    """``--metrics-port`` and ``--metrics-addr``: where the node's process serves
    Prometheus /metrics, the agent's and (on a manager) the controllers' (None when not
    given: a restart keeps the stored ones)."""
    return [
        click.option("--metrics-port", type=click.IntRange(0, 65535),
                     help=f"Serve Prometheus /metrics (plain http) on this port (default "
                     f"{default_port}; 0: none)."),
        click.option("--metrics-addr", help="Listen for /metrics on this address (default "
                     "127.0.0.1; 0.0.0.0: every address, advertised as the node's address)."),
    ]


def join_port_option() -> Callable[..., Any]:
    return click.option("--join-port", type=click.IntRange(0, 65535),
                        help=f"A manager serves its join endpoint on this port, on its "
                        f"advertise address and 127.0.0.1 (default {DEFAULT_JOIN_PORT}; "
                        "0: none).")


AGENT_OPTIONS = ("mesh_bind", "mesh_mode", "dns_addr", "drain_period", "load_period")


def agent_service_options() -> list[Callable[..., Any]]:
    """The routing mesh, DNS, drain and load options, forwarded to the agent (kubeless-agent's)."""
    return [
        click.option("--mesh-bind", help="Routing mesh: listen on published ports at this "
                     "address (default: the advertise address; 0.0.0.0: every address)."),
        click.option("--mesh-mode", type=click.Choice(("auto", "kernel", "userspace")),
                     envvar="KUBELESS_MESH_MODE",
                     help="Routing mesh data path: kernel (an nftables table of this node's), "
                     "userspace (a relay in the agent), or auto (default: kernel where nft "
                     "works, else userspace) [env KUBELESS_MESH_MODE]."),
        click.option("--dns-addr", help="Cluster DNS: ADDR[:PORT],... or 'none' (default: the "
                     "advertise address and the Docker bridge gateway, port 53)."),
        click.option("--drain-period", help="Wait this long before stopping a running task "
                     "behind the mesh (default 2s)."),
        click.option("--load-period", envvar="KUBELESS_LOAD_PERIOD",
                     help="Publish the node's load report (kubeless top, the autoscaler) this "
                     "often; 0: never (default 10s) [env KUBELESS_LOAD_PERIOD]."),
    ]


def agent_options(opts: dict[str, Any]) -> dict[str, str]:
    """The agent service options given, checked (a mistake is one CliError line)."""
    from kubeless_agent.main import dns_addrs, seconds

    given = {k: str(opts[k]) for k in AGENT_OPTIONS if opts.get(k) is not None}
    try:
        dns_addrs(given.get("dns_addr"))
        seconds(given.get("drain_period", "2s"))
        seconds(given.get("load_period", "10s"), "--load-period")
    except ValueError as err:
        raise CliError(str(err)) from None
    return given


def explicit(ctx: Context, option: str) -> str | None:
    """A global option's value when the user gave it (flag or env), else None."""
    root = click.get_current_context().find_root()
    source = root.get_parameter_source(option)
    given = source not in (None, click.core.ParameterSource.DEFAULT)
    return str(getattr(ctx, option)) if given else None


def explicit_endpoints(ctx: Context) -> str | None:
    return explicit(ctx, "endpoints")


def where(endpoints: str, prefix: str) -> str:
    return f"etcd at {endpoints} under prefix {prefix}"


def new_node_state(ctx: Context, endpoints: str, opts: dict[str, Any], role: str,
                   cluster_id: str = "") -> NodeState:
    from kubeless.api.names import dns_label
    from kubeless_agent.identity import default_node_name, parse_labels

    try:
        labels = parse_labels(opts.get("labels"))
        name = dns_label(opts["node_name"]) if opts.get("node_name") else default_node_name()
    except ValueError as err:
        raise CliError(str(err)) from None
    return NodeState(cluster_id=cluster_id, node_id=name, role=role, endpoints=endpoints,
                     prefix=ctx.prefix, runtime=opts.get("runtime") or "docker",
                     advertise_addr=opts.get("advertise_addr") or source_address(endpoints),
                     labels=labels, metrics_port=opts.get("metrics_port"),
                     metrics_addr=opts.get("metrics_addr"),
                     agent_options=agent_options(opts),
                     join_port=DEFAULT_JOIN_PORT if opts.get("join_port") is None
                     else int(opts["join_port"]))


def overridden(node: NodeState, opts: dict[str, Any], endpoints: str | None,
               prefix: str | None = None) -> NodeState:
    """A stored node state with the options given again on the command line."""
    from kubeless_agent.identity import parse_labels

    changes: dict[str, Any] = {}
    if endpoints:
        changes["endpoints"] = endpoints
    if prefix:
        changes["prefix"] = prefix
    for field in ("runtime", "advertise_addr", "metrics_port", "metrics_addr", "join_port"):
        if opts.get(field) is not None:
            changes[field] = opts[field]
    if agent_options(opts):
        changes["agent_options"] = {**node.agent_options, **agent_options(opts)}
    if opts.get("labels"):
        try:
            changes["labels"] = parse_labels(opts["labels"])
        except ValueError as err:
            raise CliError(str(err)) from None
    if opts.get("node_name") and opts["node_name"] != node.node_id:
        raise CliError(f"the state dir holds node {node.node_id}; --node-name "
                       f"{opts['node_name']} cannot rename it (use another --state-dir)")
    return replace(node, **changes)


def source_address(endpoints: str) -> str:
    """The local address this host reaches the first etcd endpoint from."""
    from kubeless.store import parse_endpoints

    try:
        host = parse_endpoints(endpoints)[0].host
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))  # no packet is sent for a UDP connect
            return str(s.getsockname()[0])
    except (OSError, ValueError):
        return "127.0.0.1"


def cluster_call(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` turning bootstrap errors into one-line CLI errors."""
    try:
        return fn()
    except ClusterError as err:
        raise CliError(str(err)) from None


def save_init(state: StateDir, node: NodeState, tokens: dict[str, str]) -> None:
    state.save_node(node)
    for role, token in tokens.items():
        state.save_token(role, token)
