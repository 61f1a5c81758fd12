"""Real etcd members for tests and benchmarks: free loopback ports, temp data dirs.

``EtcdCluster(n)`` starts n members of one cluster (n=1 for most tests).
Members can be stopped, killed and started again with the same data dir,
which is how tests break and heal the cluster on purpose.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ETCD_BIN = os.environ.get("KUBELESS_ETCD_BIN", "/usr/bin/etcd")


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the test process dies, however it dies (Linux),
    so a killed pytest never leaves etcd members behind."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


@dataclass
class EtcdCluster:
    size: int = 1
    extra_args: tuple[str, ...] = ()
    members: list[Member] = field(default_factory=list)
    root: Path | None = None

    def __post_init__(self) -> None:
        if not os.path.exists(ETCD_BIN):
            raise RuntimeError(f"{ETCD_BIN} not found: install Debian's etcd-server (make test does)")
        self.root = Path(tempfile.mkdtemp(prefix="kubeless-etcd-"))
        for i in range(self.size):
            name = f"m{i}"
            self.members.append(Member(name, free_port(), free_port(), self.root / name,
                                       self.root / f"{name}.log"))

    @property
    def endpoints(self) -> str:
        return ",".join(m.client_url for m in self.members)

    def _cmd(self, m: Member) -> list[str]:
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        return [ETCD_BIN, "--name", m.name, "--data-dir", str(m.data_dir),
                "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", f"kubeless-test-{id(self)}",
                "--heartbeat-interval", "50", "--election-timeout", "500",
                "--log-level", "warn", *self.extra_args]

    def start(self, timeout: float = 20.0) -> EtcdCluster:
        for m in self.members:
            self.start_member(m, wait=False)
        self.wait_healthy(timeout)
        return self

    def start_member(self, m: Member, wait: bool = True) -> None:
        log = open(m.log_path, "ab")
        m.proc = subprocess.Popen(self._cmd(m), stdout=log, stderr=log,
                                  start_new_session=True, preexec_fn=_die_with_parent)
        log.close()
        if wait:
            self.wait_member(m, 20.0)

    def wait_member(self, m: Member, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if m.proc is not None and m.proc.poll() is not None:
                raise RuntimeError(f"etcd {m.name} exited: {m.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{m.client_url}/health", timeout=1) as r:
                    if b'"true"' in r.read():
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"etcd {m.name} not healthy after {timeout}s: "
                           f"{m.log_path.read_text()[-2000:]}")

    def wait_healthy(self, timeout: float = 20.0) -> None:
        for m in self.members:
            if m.proc is not None:
                self.wait_member(m, timeout)

    def stop_member(self, m: Member, sig: int = signal.SIGTERM) -> None:
        if m.proc is None:
            return
        if m.proc.poll() is None:
            m.proc.send_signal(sig)
            try:
                m.proc.wait(10)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait()
        m.proc = None

    def stop(self) -> None:
        for m in self.members:
            self.stop_member(m, signal.SIGKILL)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def put_raw(endpoints: str, key: str, value: bytes) -> None:
    """Write one value as a user of etcdctl would, behind kubeless's back (from sync code;
    etcdctl itself cannot put an empty value)."""
    import asyncio

    from kubeless.store import Put, connect

    async def put() -> None:
        etcd = connect(endpoints).etcd
        try:
            await etcd.txn([], [Put(key, value)])
        finally:
            await etcd.close()
    asyncio.run(put())


def mark_cluster(endpoints: str, prefix: str) -> None:
    """Give a fresh test prefix a cluster record, so the CLI's writing commands do not
    warn that no cluster is there (tests that assert stderr line by line)."""
    put_raw(endpoints, f"{prefix}/v1/cluster", b"{}")
