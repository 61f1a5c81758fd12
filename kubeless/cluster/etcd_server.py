"""Debian's etcd on loopback ports: start a member, wait until it answers, stop it by pid.

    EtcdTls         etcd's TLS files (kubeadm's layout: ca.crt, server.*, peer.*) and
                    whether clients must present a certificate from the CA
    Member          one member: name, client and peer ports on 127.0.0.1, data dir,
                    log, TLS or not; its command line, start, health, wait and stop
    EtcdCluster     n members of one cluster in a temp dir, tuned for fast elections;
                    members can be stopped, killed and started again on the same data
                    dir (the tests' fixtures, the benchmarks); ``tls=True`` makes a CA
                    in the temp dir, serves https:// with certificates from it, and
                    issues client identities (``identity``); how a client reaches it,
                    plain or TLS alike: ``client_tls``, ``client_flags``,
                    ``client_env``, ``connect`` (an identity per common name, made once);
                    with ``tls`` etcd's auth is on too unless asked off (``auth=False``):
                    a ``root`` user and ``admin_name`` (TEST_ADMIN) holding etcd's root
                    role, and each identity a client presents admitted as its etcd
                    user (``admit``: the permission table's roles; a node's under the
                    prefix it is presented on, a hollow group's ``hollow:<group>``)
    StateDirEtcd    the one member of ``kubeless up``: data dir, pid file and log in
                    a directory, reused when an earlier run left it running
    free_port, alive, read_pid, cmdline, stop_pid   the process helpers they share

Failures are ``EtcdError``s (``kubeless.cluster.errors``); the CLI words them.
Nothing here talks to etcd beyond ``GET /health`` (over TLS, presenting the
server certificate, which is also a client one, as kubeadm's is): the store does
the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EtcdElsewhere, EtcdExited, EtcdMissing, EtcdPortTaken, EtcdSilent

ETCD_BIN = os.environ.get("KUBELESS_ETCD_BIN", "/usr/bin/etcd")
QUIET = ("--log-level", "warn")
FAST_ELECTIONS = ("--heartbeat-interval", "50", "--election-timeout", "500")
LOOPBACK = ("127.0.0.1", "::1", "localhost")  # where a local member serves, in its certificates

TEST_ADMIN = "admin:tests"  # the identity an EtcdCluster's clients present unless told

if TYPE_CHECKING:
    from kubeless.store import Etcd, ResourceStore, TlsConfig
    from kubeless.store.auth import Permission

    from .permissions import UserGrant

    from .pki import CA


def require_etcd(hint: str) -> None:
    """Raise ``EtcdMissing`` when the etcd binary cannot be run (``hint``: who installs it)."""
    if not os.access(ETCD_BIN, os.X_OK):
        raise EtcdMissing(f"{ETCD_BIN} is missing: install Debian's etcd-server ({hint})")


@dataclass(frozen=True)
class EtcdTls:
    """The files etcd serves TLS with (``pki.issue_etcd_certs`` makes them)."""

    ca: Path
    server_cert: Path
    server_key: Path
    peer_cert: Path
    peer_key: Path
    client_cert_auth: bool = True  # clients must present a certificate from the CA

    @classmethod
    def in_dir(cls, directory: Path, client_cert_auth: bool = True) -> EtcdTls:
        """kubeadm's layout: ca.crt, server.crt/.key, peer.crt/.key."""
        return cls(directory / "ca.crt", directory / "server.crt", directory / "server.key",
                   directory / "peer.crt", directory / "peer.key", client_cert_auth)

    def flags(self) -> list[str]:
        """etcd's client and peer TLS flags (peers always verify each other)."""
        client_auth = ["--client-cert-auth"] if self.client_cert_auth else []
        return ["--cert-file", str(self.server_cert), "--key-file", str(self.server_key),
                "--trusted-ca-file", str(self.ca), *client_auth,
                "--peer-cert-file", str(self.peer_cert), "--peer-key-file", str(self.peer_key),
                "--peer-trusted-ca-file", str(self.ca), "--peer-client-cert-auth"]

    def health_context(self) -> ssl.SSLContext:
        """A client context for ``/health``: trusts the CA, presents the server
        certificate (made for client use too)."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.server_cert), str(self.server_key))
        return context


@dataclass
class Member:
    """One etcd member listening on ``host`` (https:// when it has ``tls``)."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    pid: int | None = None  # the running member's, spawned here or found running
    tls: EtcdTls | None = None
    host: str = "127.0.0.1"  # any loopback address (127.0.0.2: members on different hosts)

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.peer_port}"

    def command(self, initial_cluster: str, options: Sequence[str] = QUIET) -> list[str]:
        tls = self.tls.flags() if self.tls is not None else []
        return [ETCD_BIN, "--name", self.name, "--data-dir", str(self.data_dir),
                "--listen-client-urls", self.client_url,
                "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", self.peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", initial_cluster, *tls, *options]

    def spawn(self, command: Sequence[str], *, die_with_parent: bool = False) -> None:
        """Start it in its own session (a Ctrl-C reaches the caller, not etcd), logging to
        its log; ``die_with_parent``: SIGKILL it when the caller dies, however it dies."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                list(command), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_die_with_parent if die_with_parent else None)
        self.pid = self.proc.pid

    def answers(self) -> bool:
        """True when ``/health`` says so (a member without quorum does not)."""
        return health(self.client_url, self.tls)

    def wait_healthy(self, timeout: float) -> None:
        """Block until it answers; ``EtcdExited`` or ``EtcdSilent`` otherwise."""
        end = time.monotonic() + timeout
        while not self.answers():
            self._check(end, timeout)
            time.sleep(0.05)

    async def until_healthy(self, timeout: float) -> None:
        """``wait_healthy`` without blocking the event loop (cancellable)."""
        end = time.monotonic() + timeout
        while not await asyncio.to_thread(self.answers):
            self._check(end, timeout)
            await asyncio.sleep(0.1)

    def _check(self, end: float, timeout: float) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise EtcdExited(f"etcd exited (code {self.proc.returncode}); last lines of "
                             f"{self.log_path}:\n{tail(self.log_path)}")
        if time.monotonic() > end:
            raise EtcdSilent(f"etcd did not answer on {self.client_url} within {timeout:.0f}s; "
                             f"see {self.log_path}")

    def stop(self, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
        """``sig``, then SIGKILL after ``grace`` seconds; by pid, so a member found running
        (not our child) stops the same way."""
        ended = self.proc is not None and self.proc.poll() is not None
        if self.pid is not None and not ended:
            stop_pid(self.pid, sig, grace)
            if self.proc is not None:
                self.proc.poll()  # stop_pid reaped it: let Popen know
        self.proc, self.pid = None, None


@dataclass
class EtcdCluster:
    """``size`` members of one new cluster on free ports, data in a temp dir; with
    ``tls``, a CA (``ca``) in the temp dir and https:// everywhere, clients
    presenting a certificate from it unless ``client_cert_auth`` is off."""

    size: int = 1
    extra_args: tuple[str, ...] = ()
    members: list[Member] = field(default_factory=list)
    root: Path | None = None
    tls: bool = False
    client_cert_auth: bool = True
    tls_hosts: tuple[str, ...] = LOOPBACK  # the names and addresses etcd's certificates hold
    ca: CA | None = None
    auth: bool | None = None  # etcd's auth: on with tls unless asked off (auth=False)
    admin_name: str = TEST_ADMIN
    _clients: dict[str, Path] = field(default_factory=dict, repr=False)  # common name -> dir
    _admitted: set[tuple[str, str | None, bool]] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if self.auth is None:
            self.auth = self.tls
        if self.auth and not self.tls:
            raise ValueError("etcd auth needs TLS: EtcdCluster(tls=True, auth=True)")
        require_etcd("make test does")
        root = self.root = Path(tempfile.mkdtemp(prefix="kubeless-etcd-"))
        files = self._make_tls(root / "pki") if self.tls else None
        for i in range(self.size):
            name = f"m{i}"
            self.members.append(Member(name, free_port(), free_port(), root / name,
                                       root / f"{name}.log", tls=files))

    def _make_tls(self, directory: Path) -> EtcdTls:
        from .pki import CA, issue_etcd_certs

        self.ca = CA.make(f"kubeless test CA {id(self)}")
        self.ca.save(directory)
        return issue_etcd_certs(self.ca, directory, self.tls_hosts,
                                client_cert_auth=self.client_cert_auth)

    def identity(self, common_name: str, *, lifetime: float = 3600.0,
                 directory: Path | None = None) -> Path:
        """A client identity from this cluster's CA, in DOCKER_CERT_PATH layout (ca.pem,
        cert.pem, key.pem): in ``directory``, else a new one in the temp dir."""
        from .pki import Profile, issue_identity

        if self.ca is None or self.root is None:
            raise ValueError("this etcd cluster has no TLS (EtcdCluster(tls=True))")
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="identity-", dir=self.root))
        return issue_identity(self.ca, directory, Profile(common_name, lifetime=lifetime))

    # -- how a client reaches it: the same calls for a plain and a TLS cluster ----------

    def client_identity(self, common_name: str = TEST_ADMIN, prefix: str | None = None, *,
                        hollow: bool = False) -> Path | None:
        """The identity directory of ``common_name`` (ca.pem, cert.pem, key.pem), issued
        on first use (valid a day: a slow session outlives an hour) and reused after;
        None for a plain cluster. With auth, its etcd user is admitted too (``admit``:
        a node identity names the ``prefix`` its role covers)."""
        if not self.tls:
            return None
        directory = self._certificate(common_name)
        if self.auth and common_name != self.admin_name:
            self.admit(common_name, prefix, hollow=hollow)
        return directory

    def _certificate(self, common_name: str) -> Path:
        if common_name not in self._clients:
            self._clients[common_name] = self.identity(common_name, lifetime=86400.0)
        return self._clients[common_name]

    def client_tls(self, common_name: str = TEST_ADMIN, prefix: str | None = None, *,
                   hollow: bool = False) -> TlsConfig | None:
        """What ``store.connect(..., tls=)`` and ``AgentConfig(tls=)`` take."""
        from kubeless.store import TlsConfig

        directory = self.client_identity(common_name, prefix, hollow=hollow)
        return None if directory is None else TlsConfig.from_options(cert_path=str(directory))

    def client_flags(self, common_name: str = TEST_ADMIN, prefix: str | None = None, *,
                     hollow: bool = False) -> list[str]:
        """``--endpoints`` and, with TLS, ``--cacert``/``--cert``/``--key``: the flags of
        the CLI, kubeless-agent, kubeless-controllers and etcdctl alike."""
        tls = self.client_tls(common_name, prefix, hollow=hollow)
        files = [] if tls is None else [
            "--cacert", str(tls.cacert), "--cert", str(tls.cert), "--key", str(tls.key)]
        return ["--endpoints", self.endpoints, *files]

    def client_env(self, common_name: str = TEST_ADMIN, prefix: str | None = None
                   ) -> dict[str, str]:
        """``KUBELESS_ENDPOINTS`` and, with TLS, ``KUBELESS_CERT_PATH``: the environment
        of the CLI and the daemons (merge it over a copy of ``os.environ``)."""
        directory = self.client_identity(common_name, prefix)
        env = {"KUBELESS_ENDPOINTS": self.endpoints}
        if directory is not None:
            env["KUBELESS_CERT_PATH"] = str(directory)
        return env

    def connect(self, prefix: str, common_name: str = TEST_ADMIN, *, call_timeout: float = 2.0,
                retry_for: float = 5.0) -> ResourceStore:
        """A resource store on this cluster as ``common_name`` (``await
        store.etcd.close()`` when done)."""
        from kubeless.store import connect

        return connect(self.endpoints, prefix, call_timeout=call_timeout, retry_for=retry_for,
                       tls=self.client_tls(common_name, prefix))

    # -- etcd's users, with auth on -------------------------------------------------------

    def admit(self, common_name: str, prefix: str | None = None, *,
              hollow: bool = False) -> None:
        """``common_name``'s etcd user with its roles from the permission table (once per
        common name and prefix): managers and admins (and names that are no kubeless
        identity) root; ``node:<id>`` its own role, granting its keys under ``prefix``;
        with ``hollow``, ``node:<group>`` the hollow group's role instead. Tests on one
        etcd isolate by prefix, so a role keeps the grants it got under other prefixes
        (each a node's own keys still) and a user the roles it holds."""
        from kubeless.store import Keyspace

        from . import identities, permissions

        try:
            who: identities.Identity | None = identities.parse_identity(common_name)
        except identities.IdentityError:
            who = None
        node = who is not None and who.kind == "node"
        if node and prefix is None:
            raise ValueError(f"{common_name} on an etcd with auth: name the prefix its role "
                             f"covers (client_tls({common_name!r}, prefix))")
        done = (common_name, prefix if node else None, hollow and node)
        if done in self._admitted:
            return
        keys = Keyspace(prefix or "/")
        roles: dict[str, frozenset[Permission]] = {}
        if who is None:
            grant = permissions.UserGrant(common_name, ("root",))
        elif node and hollow:
            grant, roles = permissions.hollow_group_grant(keys, who.name)
        else:
            grant, roles = permissions.user_grant(who), permissions.roles_for(keys, who)
        self.as_admin(lambda etcd: _admit_keeping(etcd, grant, roles))
        self._admitted.add(done)

    def enable_auth(self) -> None:
        """etcd's auth on: ``root`` and ``admin_name`` holding the root role (again:
        nothing changes)."""
        from kubeless.store import Keyspace

        from .access import enable_auth

        self.as_admin(lambda etcd: enable_auth(etcd, Keyspace(), [self.admin_name]))

    def as_admin(self, call: Callable[[Etcd], Awaitable[None]]) -> None:
        """Run ``call`` on a connection as ``admin_name``, in an event loop of its own in a
        thread: callable from sync code and from a running loop alike."""
        import threading

        from kubeless.store import TlsConfig, connect

        admin = TlsConfig.from_options(cert_path=str(self.admin_identity()))

        async def run() -> None:
            rstore = connect(self.endpoints, "/", tls=admin)
            try:
                await call(rstore.etcd)
            finally:
                await rstore.etcd.close()

        failed: list[BaseException] = []
        thread = threading.Thread(target=lambda: _run_into(run(), failed))
        thread.start()
        thread.join()
        if failed:
            raise failed[0]

    def admin_identity(self) -> Path:
        """The directory of ``admin_name``'s identity (``client_identity``'s)."""
        if not self.tls:
            raise ValueError("this etcd cluster has no TLS (EtcdCluster(tls=True))")
        return self._certificate(self.admin_name)

    @property
    def endpoints(self) -> str:
        return ",".join(m.client_url for m in self.members)

    def _cmd(self, m: Member) -> list[str]:
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        return m.command(initial, ("--initial-cluster-state", "new",
                                   "--initial-cluster-token", f"kubeless-test-{id(self)}",
                                   *FAST_ELECTIONS, *QUIET, *self.extra_args))

    def start(self, timeout: float = 20.0) -> EtcdCluster:
        for m in self.members:
            self.start_member(m, wait=False)
        self.wait_healthy(timeout)
        if self.auth:
            self.enable_auth()
        return self

    def start_member(self, m: Member, wait: bool = True) -> None:
        m.spawn(self._cmd(m), die_with_parent=True)
        if wait:
            self.wait_member(m, 20.0)

    def wait_member(self, m: Member, timeout: float) -> None:
        m.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Until every started member answers. A member that exited meanwhile is named
        (not the one waited on, silent for want of its peer), with its log's last lines."""
        end = time.monotonic() + timeout
        started = [m for m in self.members if m.proc is not None]
        for m in started:
            while not m.answers():
                for other in started:
                    other._check(end if other is m else float("inf"), timeout)
                time.sleep(0.05)

    def stop_member(self, m: Member, sig: int = signal.SIGTERM) -> None:
        m.stop(sig)

    def stop(self) -> None:
        for m in self.members:
            m.stop(signal.SIGKILL)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


class StateDirEtcd:
    """The single member of ``kubeless up``: started here, or found still running from
    an earlier run on the same data dir (``reused``). Its peer port is ``port + 1``.

        <dir>/etcd/ (data)  <dir>/etcd.pid  <dir>/etcd.log
    """

    def __init__(self, directory: Path, port: int, name: str,
                 tls: EtcdTls | None = None) -> None:
        self.member = Member(name, port, port + 1, directory / "etcd", directory / "etcd.log",
                             tls=tls)
        self.pid_file = directory / "etcd.pid"
        self.reused = False

    @property
    def url(self) -> str:
        return self.member.client_url

    @property
    def data_dir(self) -> Path:
        return self.member.data_dir

    @property
    def log_file(self) -> Path:
        return self.member.log_path

    @property
    def pid(self) -> int | None:
        return self.member.pid

    def leftover(self) -> int | None:
        """The pid of an etcd an earlier run started on this data dir, if it still runs;
        ``EtcdElsewhere`` when it listens on another port."""
        pid = read_pid(self.pid_file)
        if pid is None:
            return None
        args = cmdline(pid)
        if not args or str(self.data_dir) not in args:
            return None
        if self.url not in args:
            raise EtcdElsewhere(pid, self.url)
        return pid

    async def start(self, hint: str, deadline: float = 30.0) -> None:
        """Reuse the leftover member, or start one and wait until it answers.
        ``EtcdPortTaken``: another etcd answers on the port; ``hint``: who installs etcd."""
        pid = self.leftover()
        if pid is not None and await self._answers():
            self.member.pid, self.reused = pid, True
            return
        if await self._answers():
            raise EtcdPortTaken(self.url)
        require_etcd(hint)
        self.member.spawn(self.member.command(f"{self.member.name}={self.member.peer_url}"))
        self.pid_file.write_text(f"{self.member.pid}\n")
        try:
            await self.member.until_healthy(deadline)
        except EtcdSilent:
            self.stop()
            raise

    async def _answers(self) -> bool:
        return await asyncio.to_thread(self.member.answers)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; forget the pid file."""
        if self.member.pid is None:
            return
        self.member.stop(signal.SIGTERM, grace)
        self.pid_file.unlink(missing_ok=True)


# -- processes ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def health(url: str, tls: EtcdTls | None = None) -> bool:
    """Whether the member at ``url`` says it is healthy (over TLS with ``tls``)."""
    try:
        context = tls.health_context() if tls is not None else None
        with urllib.request.urlopen(f"{url}/health", timeout=1, context=context) as r:
            return b'"true"' in r.read()
    except (OSError, ValueError):  # ssl.SSLError is an OSError
        return False


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie child of ours is reaped and counts as gone)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_pid(pid: int, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """Send ``sig``; SIGKILL when ``pid`` still runs ``grace`` seconds later."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
        end = time.monotonic() + grace
        while alive(pid) and time.monotonic() < end:
            time.sleep(0.05)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
            end = time.monotonic() + grace
            while alive(pid) and time.monotonic() < end:
                time.sleep(0.05)


def read_pid(path: Path) -> int | None:
    """The pid a pid file holds, when that process still runs."""
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def _admit_keeping(etcd: Etcd, grant: UserGrant,
                         roles: dict[str, frozenset[Permission]]) -> None:
    """``grant``'s user holding its roles, each role its ``roles`` permissions on top of
    what it holds (``EtcdCluster.admit``)."""
    from kubeless.store.auth import Auth

    auth = Auth(etcd)
    for role, perms in roles.items():
        held = await auth.role(role)
        await auth.ensure_role(role, perms | (held.permissions if held else frozenset()))
    await auth.ensure_user(grant.user)
    await auth.ensure_user_roles(grant.user,
                                 {*grant.roles, *(await auth.user_roles(grant.user) or ())})


def _run_into(coro: Any, failed: list[BaseException]) -> None:
    try:
        asyncio.run(coro)
    except BaseException as err:  # handed to the waiting thread
        failed.append(err)


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the parent dies, however it dies (Linux), so a
    killed test run never leaves etcd members behind."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
