"""``kubeless up``: etcd, controllers and one agent from one foreground command.

``up`` is secure by default, and these tests use it as its users do: etcd over
https with client certificates, the CLI with the admin identity the banner
prints (``KUBELESS_CERT_PATH``); ``--insecure`` and a state dir whose etcd ran
plain keep plain http. Runs with the fake runtime so it needs no Docker Engine. Every process
started here (``up`` itself, and the etcd whose pid ``up`` records) is
ended by its pid in a finalizer.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeless.cluster.ca import cert_der
from kubeless.cluster.pki import cert_info
from kubeless.cluster.tokens import ca_digest, parse_token
from kubeless.store import TlsConfig
from lab.waiting import wait_until
from tests.support.environment import clean_env
from tests.support.etcd_server import free_port

pytestmark = pytest.mark.integration

DEADLINE = 30.0


def free_port_pair() -> int:
    """A client port whose next port (etcd's peer port) is free too."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two consecutive free ports")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


class Up:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state = tmp / "up"
        self.port = free_port_pair()
        self.procs: list[subprocess.Popen[str]] = []
        self.etcd_pids: set[int] = set()
        self.plain = clean_env()
        self.secure(True)

    def secure(self, tls: bool) -> None:
        """Talk https with the admin identity (as the banner says), or plain http."""
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.env = {**self.plain, "KUBELESS_CERT_PATH": str(self.admin)} if tls else self.plain

    @property
    def admin(self) -> Path:
        return self.state / "admin"

    def tls(self) -> TlsConfig:
        config = TlsConfig.from_options(cert_path=str(self.admin))
        assert config is not None
        return config

    def start(self, *extra: str, env: dict[str, str] | None = None
              ) -> tuple[subprocess.Popen[str], Path]:
        """``up`` in the background, its output in a file; on a free metrics port of its
        own unless ``extra`` says one (the default, 9101, may be another up's)."""
        out = self.tmp / f"up-{len(self.procs)}.out"
        metrics = [] if "--metrics-port" in extra else ["--metrics-port", str(free_port())]
        with open(out, "w") as f:
            proc = subprocess.Popen(
                [sys.executable, "-m", "kubeless_cli.main", "up", "--runtime", "fake",
                 "--etcd-port", str(self.port), "--state-dir", str(self.state), *metrics,
                 *extra],
                stdout=f, stderr=subprocess.STDOUT, text=True,
                env=self.env if env is None else env)
        self.procs.append(proc)
        return proc, out

    def kubeless(self, *args: str, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubeless_cli.main", "--endpoints",
                               self.url, *args], capture_output=True, text=True,
                              env=self.env if env is None else env, timeout=30)

    def etcd_pid(self) -> int:
        pid = int((self.state / "etcd.pid").read_text())
        self.etcd_pids.add(pid)
        return pid

    def wait_ready_node(self, proc: subprocess.Popen[str], out: Path) -> list[str]:
        deadline = time.monotonic() + DEADLINE
        rows: list[str] = []
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"up exited ({proc.returncode}):\n{out.read_text()}")
            res = self.kubeless("get", "nodes")
            rows = res.stdout.splitlines()[1:] if res.returncode == 0 else []
            if len(rows) == 1 and "ready" in rows[0].lower().split() \
                    and "is ready (manager" in out.read_text():  # not a killed up's heartbeat
                return rows
            time.sleep(0.2)
        pytest.fail(f"no Ready node within {DEADLINE}s ({rows}):\n{out.read_text()}")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        for pid in self.etcd_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    u = Up(tmp_path)
    yield u
    u.close()


def stop(proc: subprocess.Popen[str]) -> int:
    os.kill(proc.pid, signal.SIGINT)
    return proc.wait(DEADLINE)


def test_up_runs_a_ready_node_and_ctrl_c_stops_everything(up: Up) -> None:
    dashboard = free_port()  # (the session's KUBELESS_DASHBOARD_PORT=0 turns it off)
    proc, out = up.start("--dashboard-port", str(dashboard))
    rows = up.wait_ready_node(proc, out)
    assert "manager" in rows[0]
    assert f"dashboard: http://127.0.0.1:{dashboard}/ (read-only)\n" in out.read_text()
    assert_dashboard_shows_the_node(dashboard)
    etcd = up.etcd_pid()
    text = out.read_text()
    assert f"export KUBELESS_ENDPOINTS=https://127.0.0.1:{up.port}\n" in text, text
    assert f"export KUBELESS_CERT_PATH={up.admin}\n" in text, text
    assert "plain http" not in text and "security   TLS" in text
    assert "runtime    fake" in text and "kubeless get services" in text
    token = up.kubeless("join-token", "worker", "-q", "--state-dir", str(up.state))
    assert token.returncode == 0 and token.stdout.startswith("SWMTKN-1-"), token.stderr
    ca = (up.state / "ca.crt").read_text()
    assert parse_token(token.stdout.strip()).digest == ca_digest(cert_der(ca)), \
        "the cluster was made with the CA etcd's certificates come from, not another"
    assert (up.state / "etcd-pki" / "ca.crt").read_text() == ca == \
        (up.admin / "ca.pem").read_text()
    assert cert_info((up.admin / "cert.pem").read_bytes()).common_name.startswith("admin:")
    assert_refused_without_a_certificate(up)

    assert stop(proc) == 0
    wait_until(lambda: not alive(etcd), 10, "the etcd up started is stopped with it")
    assert not (up.state / "etcd.pid").exists()


def assert_dashboard_shows_the_node(port: int) -> None:
    """The controllers up runs serve the dashboard the banner names, over TLS etcd."""
    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/snapshot", timeout=5) as r:
                return [n["state"] for n in json.loads(r.read())["nodes"]] == ["ready"]
        except OSError:
            return False

    wait_until(ready, DEADLINE, "the dashboard shows the node ready")


def assert_refused_without_a_certificate(up: Up) -> None:
    """The CLI without the admin identity gets one line; an anonymous https client
    (the CA, no certificate) gets nothing from etcd; with the identity it does."""
    anonymous = up.kubeless("--cacert", str(up.admin / "ca.pem"), "get", "nodes", env=up.plain)
    assert anonymous.returncode == 1 and anonymous.stdout == ""
    assert anonymous.stderr.startswith("error: TLS: etcd at ") \
        and "requires a client certificate" in anonymous.stderr \
        and anonymous.stderr.count("\n") == 1, anonymous.stderr
    nothing = up.kubeless("get", "nodes", env=up.plain)
    assert nothing.returncode == 1 and nothing.stderr.count("\n") == 1, nothing.stderr
    assert "need the CA certificate" in nothing.stderr, nothing.stderr

    def health(context: ssl.SSLContext) -> bytes:
        with urllib.request.urlopen(f"{up.url}/health", timeout=5, context=context) as r:
            return bytes(r.read())

    ca_only = ssl.create_default_context(cafile=str(up.admin / "ca.pem"))
    with pytest.raises(OSError):
        health(ca_only)
    admin = ssl.create_default_context(cafile=str(up.admin / "ca.pem"))
    admin.load_cert_chain(str(up.admin / "cert.pem"), str(up.admin / "key.pem"))
    assert b'"true"' in health(admin)


def test_up_applies_manifests_and_comes_back_to_the_same_cluster(up: Up, tmp_path: Path) -> None:
    manifest = tmp_path / "svc.yaml"
    manifest.write_text("apiVersion: kubeless.io/v1\nkind: Service\nmetadata: {name: hello}\n"
                        "spec: {replicas: 2, template: {image: hello:1}}\n")
    first, out = up.start("--apply", str(manifest))
    up.wait_ready_node(first, out)
    made = identities(up)
    assert {"admin/cert.pem", "tls/cert.pem", "manager-tls/cert.pem", "etcd-pki/server.crt",
            "ca.crt"} <= set(made), sorted(made)
    wait_until(lambda: "hello" in up.kubeless("get", "services", "-o", "name").stdout,
               DEADLINE, "--apply's service created", interval=0.2)
    assert "(new)" in out.read_text()
    etcd = up.etcd_pid()

    # killed hard: the etcd it started survives, and the next up reuses it
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert alive(etcd)
    second, out2 = up.start()
    up.wait_ready_node(second, out2)
    text = out2.read_text()
    assert f"reused, pid {etcd}" in text and "from the state dir" in text, text
    assert "service/hello" in up.kubeless("get", "services", "-o", "name").stdout
    assert identities(up) == made, "the same CA, etcd certificates and identities"

    assert stop(second) == 0
    wait_until(lambda: not alive(etcd), 10, "etcd stopped with up")

    # stopped: the next up starts that TLS etcd again, and --insecure cannot flip it
    refused = subprocess.run(
        [sys.executable, "-m", "kubeless_cli.main", "up", "--insecure", "--runtime", "fake",
         "--etcd-port", str(up.port), "--state-dir", str(up.state)],
        capture_output=True, text=True, env=up.plain, timeout=30)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "serves TLS; --insecure only makes a new cluster" in refused.stderr
    third, out3 = up.start()
    up.wait_ready_node(third, out3)
    assert "security   TLS" in out3.read_text() and identities(up) == made
    up.etcd_pid()
    assert stop(third) == 0


def identities(up: Up) -> dict[str, bytes]:
    """Every certificate up keeps in its state dir, by path."""
    return {str(p.relative_to(up.state)): p.read_bytes() for p in sorted(up.state.rglob("*"))
            if p.suffix in (".crt", ".pem")}


def test_insecure_up_is_plain_http_and_stays_plain_without_flipping(up: Up) -> None:
    up.secure(False)
    elsewhere = up.tmp / "another-cluster"  # left exported from another cluster
    elsewhere.mkdir()
    first, out = up.start("--insecure", env={**up.plain, "KUBELESS_CERT_PATH": str(elsewhere)})
    up.wait_ready_node(first, out)
    text = out.read_text()
    assert f"KUBELESS_CERT_PATH ({elsewhere}) is not used" in text, text
    assert f"export KUBELESS_ENDPOINTS=http://127.0.0.1:{up.port}\n" in text, text
    assert "export KUBELESS_CERT_PATH" not in text and "WARNING: --insecure" in text
    assert not (up.state / "etcd-pki").exists() and not up.admin.exists()
    up.etcd_pid()
    assert stop(first) == 0

    second, out2 = up.start()  # no --insecure: this state dir's etcd stays plain
    up.wait_ready_node(second, out2)
    text = out2.read_text()
    assert "from the state dir" in text and "security   plain http, NO TLS" in text, text
    assert "WARNING: this cluster's etcd is plain http" in text \
        and "another --state-dir" in text
    up.etcd_pid()
    assert stop(second) == 0


def assert_logs_over_tls(up: Up) -> None:
    """A task's logs, served over TLS by the agent, read with the admin identity."""
    ps = up.kubeless("service", "ps", "nap", "-q")
    assert ps.returncode == 0, ps.stderr
    task = ps.stdout.split()[0]
    wait_until(lambda: "napping" in up.kubeless("logs", task).stdout, DEADLINE,
               "the task's output, read over TLS", interval=0.2)


def test_ctrl_c_and_up_again_adopts_every_process_and_rewrites_nothing(
        up: Up, tmp_path: Path) -> None:
    """Ctrl-C stops the agent, the controllers and etcd; the next ``up`` (etcd extends the
    leases it kept) takes the node's heartbeat over at once and adopts every process."""
    import asyncio
    import json

    from kubeless import store
    from kubeless_agent.leave import remove_all
    from kubeless_agent.runtime import make_runtime
    from lab.waiting import hold

    manifest = tmp_path / "svc.yaml"
    manifest.write_text("apiVersion: kubeless.io/v1\nkind: Service\nmetadata: {name: nap}\n"
                        "spec: {replicas: 3, template: {image: none, command: [sh, -c, "
                        "'echo napping; exec sleep 600'], stopGracePeriod: 1s}}\n")
    node = "upnode"

    async def read() -> tuple[dict[str, int], dict[str, str], int]:
        rs = store.connect(up.url, "/kubeless", retry_for=5, tls=up.tls())
        try:
            tasks, _ = await rs.etcd.list_prefix(rs.keys.root + "tasks/")
            reports, _ = await rs.etcd.list_prefix(rs.keys.agent(node) + "tasks/")
            beat, _ = await rs.etcd.get(rs.keys.heartbeat(node))
            revs = {kv.key: kv.mod_revision for kv in tasks + reports}
            pids = {kv.key: json.loads(kv.value).get("containerId") for kv in reports
                    if json.loads(kv.value).get("state") == "running"}
            return revs, pids, beat.create_revision if beat is not None else 0
        finally:
            await rs.etcd.close()

    def three_running() -> tuple[dict[str, int], dict[str, str], int] | None:
        found = asyncio.run(read())
        return found if len(found[1]) == 3 else None

    first, out = up.start("--runtime", "process", "--node-name", node, "--dns-addr", "none",
                          "--apply", str(manifest))
    try:
        up.wait_ready_node(first, out)
        before = wait_until(three_running, DEADLINE, "three tasks running", interval=0.2)
        up.etcd_pid()
        assert_logs_over_tls(up)
        assert stop(first) == 0
        second, out2 = up.start("--runtime", "process", "--node-name", node, "--dns-addr", "none")
        up.wait_ready_node(second, out2)
        text = out2.read_text()
        assert "took over from lease" in text and "its agent stopped gracefully" in text, text
        up.etcd_pid()

        async def unchanged() -> bool:
            return await read() == before  # same revisions, pids and heartbeat creation
        asyncio.run(hold(3.0, unchanged, "nothing rewritten, replaced or orphaned"))
        assert stop(second) == 0
    finally:
        async def clean() -> None:
            runtime = make_runtime("process", node, state_dir=str(up.state / "process"))
            await remove_all(runtime, {})
            await runtime.close()
        asyncio.run(clean())


def listening(port: int) -> set[str]:
    """The local addresses a TCP socket listens on at ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
    return found


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def test_up_serves_metrics_on_loopback_and_applies_once(up: Up, tmp_path: Path) -> None:
    """The banner's metrics URL answers with the agent's and the controllers' metrics,
    on 127.0.0.1 only; --metrics-port given again on a state dir is honoured, and kept
    when not given; --apply-once applies on the first start only."""
    manifest = tmp_path / "svc.yaml"
    manifest.write_text("apiVersion: kubeless.io/v1\nkind: Service\nmetadata: {name: hello}\n"
                        "spec: {replicas: 1, template: {image: hello:1}}\n")
    first_port = free_port()
    first, out = up.start("--metrics-port", str(first_port), "--apply-once", str(manifest))
    up.wait_ready_node(first, out)
    assert f"metrics: http://127.0.0.1:{first_port}/metrics" in out.read_text()
    text = scrape(first_port)
    assert "kubeless_agent_tasks" in text and "kubeless_controller_is_leader" in text
    assert listening(first_port) == {"127.0.0.1"}
    wait_until(lambda: "hello" in up.kubeless("get", "services", "-o", "name").stdout,
               DEADLINE, "--apply-once's service created", interval=0.2)
    assert up.kubeless("delete", "service", "hello").returncode == 0  # the user's change
    up.etcd_pid()
    assert stop(first) == 0

    second_port = free_port()
    second, out2 = up.start("--metrics-port", str(second_port), "--apply-once", str(manifest))
    up.wait_ready_node(second, out2)
    text2 = out2.read_text()
    assert f"metrics: http://127.0.0.1:{second_port}/metrics" in text2, text2
    assert "not applying" in text2 and "kubeless_nodes" in scrape(second_port)
    assert listening(second_port) == {"127.0.0.1"}
    assert "hello" not in up.kubeless("get", "services", "-o", "name").stdout
    up.etcd_pid()
    assert stop(second) == 0

    # not given: the state dir's port; a taken port is one line before anything starts
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the scrapes' TIME_WAIT
        taken.bind(("127.0.0.1", second_port))
        taken.listen()
        refused = subprocess.run(
            [sys.executable, "-m", "kubeless_cli.main", "up", "--runtime", "fake",
             "--etcd-port", str(up.port), "--state-dir", str(up.state)],
            capture_output=True, text=True, env=up.env, timeout=30)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert f"cannot serve metrics on 127.0.0.1:{second_port}" in refused.stderr
    assert not (up.state / "etcd.pid").exists() or not alive(up.etcd_pid())
