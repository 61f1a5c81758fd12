"""``kubeless certs``: the cluster CA and the certificates an external etcd needs, before ``init``.

kubeadm's ``certs`` phase for kubeless: a user running etcd themselves makes
the cluster CA first, then etcd's certificates from it, starts etcd with them,
then runs ``kubeless init`` on https:// with an admin identity from the same CA:

    kubeless certs ca    --state-dir D             D/ca.key, D/ca.crt (as ``up`` makes
                                                   them: ``bootstrap.new_cluster_ca``);
                                                   kept when D holds one already
    kubeless certs etcd  --state-dir D --hosts H,...   etcd's server and peer
                                                   certificates for those hosts
                                                   (``pki.issue_etcd_certs``, kubeadm's
                                                   layout), in D/etcd-pki or --out;
                                                   prints etcd's TLS flags
    kubeless certs admin NAME --state-dir D        ``admin:NAME``'s identity in
                                                   D/admin or --out (KUBELESS_CERT_PATH)

``init --state-dir D`` then makes the cluster with that CA
(``bootstrap.held_cluster_ca``) and issues the node's own identities from it.
Each command writes nothing when refused (one line). ``etcd`` and ``admin``
issue anew each time (certificates last 90 days: run them again to renew;
etcd reads its files at each new connection). Any manager holds the CA key,
so they also work after ``init`` (more etcd members, more admins).
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from kubeless.cluster import CAError, DEFAULT_STATE_DIR, StateDir
from kubeless_cli.context import CliError, USAGE
from kubeless_cli.node_state import cluster_call
from kubeless_cli.up_tls import ADMIN_DIR, ETCD_PKI, load_cluster_ca

if TYPE_CHECKING:
    from kubeless.cluster.pki import CA

_DNS = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}"
                  r"[a-z0-9])?)*$", re.IGNORECASE)


def parse_hosts(text: str) -> tuple[str, ...]:
    """``--hosts``: addresses and DNS names, comma-separated; ``ValueError`` naming the
    first that is neither. The loopback names are always added (etcd's own health
    checks, an etcdctl on the member's host)."""
    from kubeless.cluster.etcd_server import LOOPBACK

    hosts = [h.strip() for h in text.split(",") if h.strip()]
    if not hosts:
        raise ValueError("--hosts: give the addresses and DNS names etcd serves on, "
                         "comma-separated (e.g. 10.0.0.1,etcd.example)")
    for host in hosts:
        if not (_is_ip(host) or (_DNS.match(host) and len(host) <= 253)):
            raise ValueError(f"--hosts: {host!r} is neither an IP address nor a DNS name")
    return tuple(dict.fromkeys([*hosts, *LOOPBACK]))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def etcd_flags_text(flags: list[str]) -> str:
    """etcd's TLS flags, one ``--flag value`` per continued line."""
    lines: list[str] = []
    for arg in flags:
        if arg.startswith("--"):
            lines.append(arg)
        else:
            lines[-1] += " " + shlex.quote(arg)
    return " \\\n".join(f"      {line}" for line in lines)


def state_dir_option() -> Callable[[Any], Any]:
    return click.option("--state-dir", envvar="KUBELESS_STATE_DIR", default=DEFAULT_STATE_DIR,
                        show_default=True, help="The first manager's state dir, where the "
                        "cluster CA is kept (init's --state-dir) [env KUBELESS_STATE_DIR].")


@click.group()
def certs() -> None:
    """The cluster CA and certificates for an etcd you run yourself (before `init`).

    \b
    1. kubeless certs ca --state-dir D
    2. kubeless certs etcd --state-dir D --hosts 10.0.0.1,etcd.example
       (copy D/etcd-pki to each member; start etcd with the flags printed)
    3. kubeless certs admin NAME --state-dir D
    4. KUBELESS_CERT_PATH=D/admin kubeless --endpoints https://10.0.0.1:2379
       init --state-dir D
    """


@certs.command("ca")
@state_dir_option()
def ca_cmd(state_dir: str) -> None:
    """Make the cluster CA in --state-dir (ca.key, ca.crt); keep the one there."""
    from kubeless.cluster import bootstrap

    state = StateDir(state_dir)
    held = cluster_call(lambda: bootstrap.held_cluster_ca(state))
    if held is not None:
        click.echo(f"The state dir {state} holds a cluster CA already (ca.crt, ca.key): kept.")
    else:
        cluster_call(lambda: bootstrap.new_cluster_ca(state))
        click.echo(f"Made the cluster CA in {state}: ca.crt (give it to etcd as "
                   f"--trusted-ca-file) and ca.key (mode 0600: keep it private).")
    click.echo(f"\nNext, etcd's certificates:\n    kubeless certs etcd --state-dir {state} "
               "--hosts ADDRESS,...")


@certs.command("etcd")
@state_dir_option()
@click.option("--hosts", required=True, help="The addresses and DNS names etcd's members "
              "serve on and clients reach them by, comma-separated (127.0.0.1, ::1 and "
              "localhost are added).")
@click.option("--out", type=click.Path(file_okay=False), help="Where to write them "
              f"[default: <state-dir>/{ETCD_PKI}].")
def etcd_cmd(state_dir: str, hosts: str, out: str | None) -> None:
    """etcd's server and peer certificates from the cluster CA, and etcd's TLS flags."""
    from kubeless.cluster.pki import issue_etcd_certs

    try:
        names = parse_hosts(hosts)
    except ValueError as err:
        raise CliError(str(err), USAGE) from None
    state = StateDir(state_dir)
    ca = _ca(state)
    directory = Path(out).expanduser().absolute() if out else state.path / ETCD_PKI
    try:
        files = issue_etcd_certs(ca, directory, names)
    except OSError as err:
        raise CliError(f"cannot write etcd's certificates in {directory}: {err.strerror}") \
            from None
    click.echo(f"etcd's certificates for {', '.join(names)} in {directory}:\n"
               f"  ca.crt                the cluster CA (clients and peers are verified "
               f"against it)\n"
               f"  server.crt server.key serving clients\n"
               f"  peer.crt peer.key     between members\n\n"
               f"Copy {directory} to each etcd member (the keys are private), and start etcd "
               f"with https:// in --listen-client-urls, --advertise-client-urls, "
               f"--listen-peer-urls, --initial-advertise-peer-urls and --initial-cluster, and:\n"
               f"{etcd_flags_text(files.flags())}\n\n"
               f"Next, an identity to run init with:\n"
               f"    kubeless certs admin NAME --state-dir {state}")


@certs.command("admin")
@click.argument("name")
@state_dir_option()
@click.option("--out", type=click.Path(file_okay=False), help="Where to write it "
              f"[default: <state-dir>/{ADMIN_DIR}].")
def admin_cmd(name: str, state_dir: str, out: str | None) -> None:
    """An admin identity (admin:NAME) from the cluster CA, for KUBELESS_CERT_PATH."""
    from kubeless.cluster.identities import admin, identity_error
    from kubeless.cluster.pki import Profile, cert_info, issue_identity

    problem = identity_error("admin", name)
    if problem is not None:
        raise CliError(problem, USAGE)
    state = StateDir(state_dir)
    ca = _ca(state)
    directory = Path(out).expanduser().absolute() if out else state.path / ADMIN_DIR
    common_name = admin(name).common_name
    try:
        held = cert_info((directory / "cert.pem").read_bytes()).common_name
    except (OSError, CAError):
        held = None
    if held is not None and held != common_name:
        raise CliError(f"{directory} holds the identity {held}: pass another --out for "
                       f"{common_name}")
    try:
        issue_identity(ca, directory, Profile(common_name))
    except OSError as err:
        raise CliError(f"cannot write the identity in {directory}: {err.strerror}") from None
    click.echo(f"The identity {common_name} in {directory} (ca.pem, cert.pem, key.pem: keep "
               f"it private). Use it with:\n    export KUBELESS_CERT_PATH={directory}\n\n"
               f"A new cluster on https:// etcd:\n    KUBELESS_CERT_PATH={directory} kubeless "
               f"--endpoints https://ADDRESS:2379 init --state-dir {state}\n\n"
               f"A cluster made already (etcd's auth is on): an admin lets it in with\n"
               f"    kubeless user add {common_name}")


def _ca(state: StateDir) -> CA:
    if not state.has_ca_key():
        raise CliError(f"the state dir {state} holds no cluster CA: make it first with "
                       f"`kubeless certs ca --state-dir {state}`")
    ca: CA = cluster_call(lambda: load_cluster_ca(state))
    return ca
