"""The harness's certificates: a cluster CA and every party's identity, written directly
(as kubeadm's ``certs`` phase does) before any process starts.

    <run>/pki/ca.key, ca.crt    the cluster CA (``kubeless.cluster.pki.CA``)
    <run>/pki/etcd/             etcd's server and peer certificates, kubeadm's layout,
                                naming every manager's address and the shared name
                                ``etcd.kubeless`` (clients reach members on several hosts)
    <run>/admin/                ``admin:lab``: the harness's own clients and the person's
                                CLI (``KUBELESS_CERT_PATH``)
    <host>/tls/                 ``node:<name>``, client and server on the host's address
                                (the agent's etcd identity; its logs server serves TLS)
    <host>/manager-tls/         ``manager:<name>`` (a manager's controllers)
    <manager>/ca.key, ca.crt    the CA again: any manager signs (its join endpoint)

Each host's directory is laid out as a state dir (``kubeless.cluster.StateDir``).
``identities`` names every identity the harness issues (etcd's users once auth
is on: ``lab.cluster.harness`` enables it with ``kubeless.cluster.access``).
``write_record`` then writes the cluster record (its id, the CA, the join
tokens' hashes, the secrets key derived from the CA key) once etcd is up, as
``init`` does: tokens for the join endpoints (``lab.cluster.join_endpoint``).
Each manager's controllers get its ``ca.key`` (``--ca-key``): they deliver secrets.

The profiles are the join endpoint's (``join_server.node_profiles``), so a harness
node holds what a node that joined through a manager would. ``LabTls.identity``
issues more (short-lived, for the e2e tests of refusals).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kubeless.cluster.etcd_server import EtcdTls
from kubeless.cluster.join_server import node_profiles
from kubeless.cluster.pki import CA, DEFAULT_LIFETIME, Profile, issue_etcd_certs, issue_identity
from kubeless.cluster import StateDir, identities as ids
from kubeless.cluster.bootstrap import ClusterCA, create_cluster
from kubeless.cluster.identities import Identity
from kubeless.cluster.record import new_cluster_id
from kubeless.store import ResourceStore, TlsConfig

if TYPE_CHECKING:
    from lab.cluster.harness import Host

ADMIN_NAME = "lab"
ADMIN = ids.admin(ADMIN_NAME).common_name  # admin:lab
NODE_DIR, MANAGER_DIR = "tls", "manager-tls"


@dataclass(frozen=True)
class LabTls:
    """The run's CA, etcd's files and the admin identity's directory."""

    ca: CA
    etcd: EtcdTls
    admin: Path

    def client(self, directory: Path | None = None) -> TlsConfig:
        """A client's files (the admin's unless ``directory``), DOCKER_CERT_PATH layout."""
        config = TlsConfig.from_options(cert_path=str(directory or self.admin))
        assert config is not None
        return config

    def identity(self, common_name: str, directory: Path, *, lifetime: float = 3600.0,
                 hosts: tuple[str, ...] = (), server: bool = False) -> Path:
        """Another identity from the cluster CA in ``directory`` (tests: short lifetimes)."""
        usages = frozenset({"client", "server"} if server else {"client"})
        return issue_identity(self.ca, directory, Profile(common_name, hosts, usages, lifetime))


async def write_record(rstore: ResourceStore, tls: LabTls, first: str,
                       where: str) -> dict[str, str]:
    """The cluster record for the harness's CA, made as ``init`` makes it (the Node of
    ``first`` is already registered by the harness); role -> plain join token."""
    first_node = await rstore.get("Node", first)
    assert first_node is not None, f"{first} is not registered"
    ca = ClusterCA(new_cluster_id(), tls.ca.cert_pem, tls.ca.key)  # the key: its secretsKey
    _, tokens = await create_cluster(rstore, StateDir(tls.admin.parent / "state"), first_node,
                                     where, ca)
    return tokens


def identities(hosts: Iterable[Host]) -> list[Identity]:
    """Every identity ``make`` issues: the admin, each host's ``node:<name>`` and each
    manager's ``manager:<name>`` (what etcd's user table holds, ``root`` aside)."""
    made = [ids.admin(ADMIN_NAME)]
    for h in hosts:
        made.append(ids.node(h.name))
        if h.manager:
            made.append(ids.manager(h.name))
    return made


def make(directory: Path, hosts: Iterable[Host]) -> LabTls:
    """The CA in ``directory/pki``, etcd's certificates for the managers, the admin
    identity, and each host's own identities in its directory."""
    hosts = list(hosts)
    ca = CA.make(f"kubeless lab CA {directory.name}")
    ca.save(directory / "pki")
    managers = [h.address for h in hosts if h.manager]
    etcd = issue_etcd_certs(ca, directory / "pki" / "etcd", managers, DEFAULT_LIFETIME)
    for h in hosts:
        node, manager = node_profiles(h.name, h.address, h.role)
        issue_identity(ca, h.dir / NODE_DIR, node)
        if manager is not None:
            issue_identity(ca, h.dir / MANAGER_DIR, manager)
            ca.save(h.dir)
    admin = issue_identity(ca, directory / "admin", Profile(ADMIN))
    return LabTls(ca, etcd, admin)
