"""Transport security of ``up``, ``init`` and ``join``: TLS by default, plain only when asked.

    choose_transport   ``up``'s decision (pure): a new state dir gets TLS unless
                       ``--insecure``; one whose etcd already has certificates
                       keeps TLS (``--insecure`` is refused there); one whose etcd
                       ran plain before TLS was the default stays plain (never a
                       silent flip), with a warning in the banner
    choose_node_transport   ``init``'s and ``join``'s on the etcd they are given (pure):
                       https:// is TLS (``--insecure`` refused there); http:// is
                       refused unless ``--insecure``, given now or remembered in the
                       node's state (a node restarting keeps its choice, warned)
    load_cluster_ca    the CA a state dir holds, its failure naming the state dir
                       (``up`` and ``kubeless certs``)
    admin_name         the admin identity's name: the user's, when it is a valid
                       identity name, else ``up``
    renewal_due        whether a certificate is missing, unreadable or in the last
                       third of its lifetime (pure, on its text and the time)
    prepare_tls        the files, made before etcd starts and reused by the next
                       ``up``: the cluster CA (``bootstrap.new_cluster_ca``), etcd's
                       server and peer certificates from it, and the admin identity;
                       each ``up`` renews those whose renewal is due (etcd reads its
                       files at each new connection, so a running etcd takes them too)
    renew_own_identities   the node's tls/ and manager-tls/, issued again at start
                       when missing or due (the agent and controllers start after;
                       while running, they renew them: ``kubeless.cluster.renewal``).
                       etcd's certificates and the admin identity are renewed only
                       here, at each start: a running ``up`` outliving them needs a
                       restart (etcd's default lifetime, 90 days)

    <state-dir>/   ca.key ca.crt     the cluster CA (as ``init`` makes it)
                   etcd-pki/         etcd's: ca.crt, server.crt/.key, peer.crt/.key
                   admin/            the admin identity: ca.pem, cert.pem, key.pem
                                     (KUBELESS_CERT_PATH's layout)
                   tls/ manager-tls/ the node's and its controllers' identities
"""

from __future__ import annotations

import datetime
import getpass
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kubeless.cluster import CAError, StateDir
from kubeless.cluster.bootstrap import ClusterCA, held_cluster_ca, new_cluster_ca
from kubeless.cluster.etcd_server import LOOPBACK, EtcdTls
from kubeless.cluster.identities import admin, identity_error
from kubeless.store import TlsConfig
from kubeless_cli.context import CliError

if TYPE_CHECKING:
    from kubeless.cluster.pki import CA

ETCD_PKI = "etcd-pki"
ADMIN_DIR = "admin"
ETCD_DATA = "etcd"
DEFAULT_ADMIN = "up"


@dataclass(frozen=True)
class Transport:
    """How ``up``'s etcd serves: TLS or not, and the banner's warning when not."""

    tls: bool
    warning: str | None = None


def choose_transport(*, etcd_certs: bool, etcd_data: bool, insecure: bool,
                     state: str) -> Transport:
    """TLS or plain for the etcd of the state dir ``state``; ``CliError`` for
    ``--insecure`` on a state dir whose etcd serves TLS."""
    if etcd_certs:
        if insecure:
            raise CliError(f"the state dir {state} holds a cluster whose etcd serves TLS; "
                           "--insecure only makes a new cluster: pass another --state-dir")
        return Transport(True)
    fresh = f"start a secure one with another --state-dir (or remove {state})"
    if etcd_data:
        return Transport(False, f"WARNING: this cluster's etcd is plain http, without TLS "
                                f"(made before TLS was the default, or with --insecure): "
                                f"anyone who reaches 127.0.0.1 can read and write it; {fresh}")
    if insecure:
        return Transport(False, insecure_warning("127.0.0.1"))
    return Transport(True)


def insecure_warning(reach: str) -> str:
    """The warning every plain etcd gets (``reach``: who can reach it)."""
    return (f"WARNING: --insecure: etcd is plain http, without TLS or client certificates: "
            f"anyone who reaches {reach} can read and write the cluster, task logs are served "
            "without TLS")


SECURE_WAY = ("use https:// endpoints with the cluster CA's certificates (`kubeless certs "
              "--help`: the CA, etcd's certificates, an admin identity)")


def choose_node_transport(endpoints: str, *, insecure: bool, remembered: bool,
                          verb: str) -> Transport:
    """TLS or plain for ``init``/``join`` (``verb``) on ``endpoints``; ``CliError`` for
    http:// without ``--insecure`` (given now, or ``remembered`` by the node's state), and
    for ``--insecure`` with https://."""
    from kubeless.store import BadEndpoint, parse_endpoints

    try:
        tls = all(e.scheme == "https" for e in parse_endpoints(endpoints))
    except BadEndpoint as err:
        raise CliError(str(err)) from None
    if tls:
        if insecure:
            raise CliError(f"--insecure is for an etcd without TLS, but {endpoints} is "
                           "https://: drop --insecure")
        return Transport(True)
    if not (insecure or remembered):
        raise CliError(f"etcd at {endpoints} has no TLS: `kubeless {verb}` refuses a plain "
                       f"connection (anyone who reaches etcd could read and write the "
                       f"cluster): {SECURE_WAY}, or pass --insecure to accept it")
    return Transport(False, insecure_warning(", ".join(_hosts(endpoints))))


def _hosts(endpoints: str) -> list[str]:
    from kubeless.store import parse_endpoints

    return list(dict.fromkeys(e.host for e in parse_endpoints(endpoints)))


def admin_name(user: str) -> str:
    """``user`` as an identity name when it can be one (lowercased, other characters as
    ``-``), else ``up`` (``root`` is reserved)."""
    name = re.sub(r"[^a-z0-9-]+", "-", user.lower()).strip("-")
    return name if identity_error("admin", name) is None else DEFAULT_ADMIN


def renewal_due(cert_pem: bytes | None, now: datetime.datetime) -> bool:
    """True when the certificate is missing or unreadable, or less than a third of its
    lifetime is left (Swarm renews in the last half; a third leaves 30 of 90 days)."""
    from kubeless.cluster.pki import cert_info

    if cert_pem is None:
        return True
    try:
        info = cert_info(cert_pem)
    except CAError:
        return True
    return now >= info.not_after - (info.not_after - info.not_before) / 3


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


@dataclass(frozen=True)
class UpTls:
    """What ``up`` runs TLS with."""

    etcd: EtcdTls  # etcd's own files
    admin_dir: Path  # the admin identity (KUBELESS_CERT_PATH)
    ca: ClusterCA  # the CA a new cluster is made with

    @property
    def admin(self) -> TlsConfig:
        config = TlsConfig.from_options(cert_path=str(self.admin_dir))
        assert config is not None
        return config


def prepare_tls(state: StateDir, user: str | None = None,
                now: datetime.datetime | None = None) -> UpTls:
    """The CA, etcd's certificates and the admin identity: those the state dir holds,
    else (or when their renewal is due) made now (``ClusterError`` when they cannot be)."""
    try:
        return _prepare_tls(state, user, now or datetime.datetime.now(datetime.timezone.utc))
    except OSError as err:
        raise CAError(f"cannot write up's certificates in {state}: {err.strerror}: "
                      f"{err.filename}") from None


def _prepare_tls(state: StateDir, user: str | None, now: datetime.datetime) -> UpTls:
    from kubeless.cluster.pki import Profile, issue_etcd_certs, issue_identity

    cluster_ca = held_cluster_ca(state) or new_cluster_ca(state)  # used for a new cluster
    ca = load_cluster_ca(state)
    pki = state.path / ETCD_PKI
    etcd = EtcdTls.in_dir(pki)
    if not all(p.is_file() for p in (etcd.ca, etcd.server_key, etcd.peer_key)) \
            or renewal_due(_read(etcd.server_cert), now) \
            or renewal_due(_read(etcd.peer_cert), now):
        etcd = issue_etcd_certs(ca, pki, LOOPBACK)
    admin_dir = state.path / ADMIN_DIR
    held = _read(admin_dir / "cert.pem")
    if not (admin_dir / "key.pem").is_file() or renewal_due(held, now):
        issue_identity(ca, admin_dir, Profile(_admin_common_name(held, user)))
    return UpTls(etcd, admin_dir, cluster_ca)


def load_cluster_ca(state: StateDir) -> CA:
    """The CA in the state dir (``ca.key``, ``ca.crt``); ``CAError`` naming it."""
    from kubeless.cluster.pki import CA

    try:
        return CA.load(state.path)
    except CAError as err:
        raise CAError(f"the cluster CA in {state} (ca.key, ca.crt): {err}") from None


def renew_own_identities(state: StateDir, node_id: str, address: str,
                         now: datetime.datetime | None = None,
                         lifetime: float | None = None) -> bool:
    """Issue this manager's ``tls/`` and ``manager-tls/`` again when either is missing or
    due for renewal; whether they were."""
    from kubeless.cluster.join_server import issue_own_identities

    when = now or datetime.datetime.now(datetime.timezone.utc)
    if not any(renewal_due(_read(d / "cert.pem"), when)
               for d in (state.tls_dir, state.manager_tls_dir)):
        return False
    if lifetime is None:
        issue_own_identities(state, node_id, address, "manager")
    else:
        issue_own_identities(state, node_id, address, "manager", lifetime)
    return True


def _admin_common_name(held: bytes | None, user: str | None) -> str:
    """The name the admin certificate held says (a renewal keeps it), else the user's."""
    from kubeless.cluster.pki import cert_info

    if held is not None:
        try:
            return cert_info(held).common_name
        except CAError:
            pass
    return admin(admin_name(user if user is not None else _user())).common_name


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return DEFAULT_ADMIN
