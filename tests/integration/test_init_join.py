"""``kubeless init``, ``join`` and ``join-token`` as a user runs them, against a real etcd.

Every node runs as a foreground subprocess with the fake runtime; each is
ended by its pid (SIGINT first, as Ctrl-C) in a finalizer.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from kubeless import store
from kubeless.cluster.tokens import hash_secret, parse_token
from tests.support.cli_errors import assert_one_error_line
from tests.support.etcd_server import EtcdCluster
from tests.support.environment import clean_env

pytestmark = pytest.mark.integration

TOKEN = re.compile(r"SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}")
DEADLINE = 20.0


class Cli:
    """Runs ``kubeless`` against one etcd and prefix; foreground ones are kept to end them.
    ``cert_path``: the user's identity (``KUBELESS_CERT_PATH``) for a TLS etcd, which
    ``values`` reads with too."""

    def __init__(self, endpoints: str, prefix: str, tmp: Path,
                 cert_path: Path | None = None) -> None:
        self.endpoints, self.prefix, self.tmp = endpoints, prefix, tmp
        self.cert_path = cert_path
        self.procs: list[tuple[subprocess.Popen[str], Path]] = []

    def env(self, with_cluster: bool = True) -> dict[str, str]:
        env = clean_env()
        if with_cluster:
            env.update(KUBELESS_ENDPOINTS=self.endpoints, KUBELESS_PREFIX=self.prefix)
            if self.cert_path is not None:
                env["KUBELESS_CERT_PATH"] = str(self.cert_path)
        return env

    def run(self, *args: str, with_cluster: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubeless_cli.main", *args],
                              capture_output=True, text=True, env=self.env(with_cluster),
                              timeout=60)

    def start(self, *args: str, with_cluster: bool = True) -> tuple[subprocess.Popen[str], Path]:
        out = self.tmp / f"proc-{len(self.procs)}.out"
        with open(out, "w") as f:
            proc = subprocess.Popen([sys.executable, "-m", "kubeless_cli.main", *args],
                                    stdout=f, stderr=subprocess.STDOUT, text=True,
                                    env=self.env(with_cluster))
        self.procs.append((proc, out))
        return proc, out

    def stop(self, proc: subprocess.Popen[str]) -> int:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
        return proc.wait(DEADLINE)

    def close(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    # -- etcd, read directly -------------------------------------------------------

    def values(self, prefix: str = "/") -> dict[str, bytes]:
        tls = store.TlsConfig.from_options(cert_path=str(self.cert_path)) \
            if self.cert_path is not None else None

        async def read() -> dict[str, bytes]:
            async with store.Etcd(store.parse_endpoints(self.endpoints), tls=tls) as etcd:
                kvs, _ = await etcd.list_prefix(prefix)
                return {kv.key: kv.value for kv in kvs}
        return asyncio.run(read())

    def keys(self) -> store.Keyspace:
        return store.Keyspace(self.prefix)

    def node(self, name: str) -> dict[str, object] | None:
        raw = self.values(self.keys().spec("Node", name)).get(self.keys().spec("Node", name))
        return yaml.safe_load(raw) if raw is not None else None

    def wait_for(self, what: str, check: Callable[[], bool],
                 proc: tuple[subprocess.Popen[str], Path] | None = None) -> None:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if check():
                return
            if proc is not None and proc[0].poll() is not None:
                pytest.fail(f"exited ({proc[0].returncode}) before {what}:\n{proc[1].read_text()}")
            time.sleep(0.1)
        output = proc[1].read_text() if proc else ""
        pytest.fail(f"not within {DEADLINE}s: {what}\n{output}")

    def wait_ready(self, node: str, proc: tuple[subprocess.Popen[str], Path]) -> None:
        """Until a live agent holds the heartbeat (not a stopped one's, left to its TTL)."""
        key = self.keys().heartbeat(node)

        def live() -> bool:
            beat = self.values(key).get(key)
            return beat is not None and not json.loads(beat).get("stoppedAt")
        self.wait_for(f"node {node} ready", live, proc)


@pytest.fixture
def cli(plain_etcd: EtcdCluster, prefix: str, tmp_path: Path) -> Iterator[Cli]:
    """On ``plain_etcd``, with ``--insecure``: nodes join etcd directly here, which a
    TLS etcd allows no host without a certificate (joining a TLS cluster through the
    join endpoint: test_join_endpoint.py, test_external_etcd.py)."""
    c = Cli(plain_etcd.endpoints, prefix, tmp_path)
    yield c
    c.close()


def init_cluster(cli: Cli, tmp: Path, name: str = "m1") -> tuple[Path, dict[str, str], str]:
    """A running first manager: (state dir, role -> token, init's output)."""
    state = tmp / name
    proc = cli.start("init", "--insecure", "--runtime", "fake", "--node-name", name,
                     "--state-dir", str(state))
    cli.wait_ready(name, proc)
    out = proc[1].read_text()
    worker, manager = TOKEN.findall(out)[:2]
    return state, {"worker": worker, "manager": manager}, out


def test_init_writes_the_record_with_hashes_only_and_runs_the_first_manager(
        cli: Cli, tmp_path: Path) -> None:
    state, tokens, out = init_cluster(cli, tmp_path)
    assert "current node (m1) is now a manager" in out
    assert f"kubeless --prefix {cli.prefix} join --token {tokens['worker']} {cli.endpoints}" in out
    assert "neither encrypted nor authenticated" in out and "NO TLS" in out

    record = yaml.safe_load(cli.values(cli.keys().cluster())[cli.keys().cluster()])
    assert record["kind"] == "Cluster" and record["caCertificate"].startswith("-----BEGIN")
    for role, token in tokens.items():
        assert record["joinTokens"][role]["sha256"] == hash_secret(parse_token(token).secret)
        assert parse_token(token).digest == record["caDigest"]
    # the plain tokens are under secrets/ only (for managers and admins), nowhere else
    secrets = cli.keys().join_tokens()
    assert yaml.safe_load(cli.values(secrets)[secrets]) == tokens
    elsewhere = b"".join(v for k, v in cli.values().items() if k != secrets)
    for token in tokens.values():
        assert parse_token(token).secret.encode() not in elsewhere

    node = cli.node("m1")
    assert node is not None and node["spec"]["role"] == "manager"  # type: ignore[index]
    cli.wait_for("m1's controllers", lambda: bool(cli.values(cli.keys().manager("m1"))))
    assert (state / "node-id").read_text().strip() == "m1"
    assert (state / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (state / "join-tokens.yaml").stat().st_mode & 0o777 == 0o600
    stored = yaml.safe_load((state / "node.yaml").read_text())
    assert stored["cluster_id"] == record["id"]
    assert stored["endpoints"] == cli.endpoints and stored["prefix"] == cli.prefix

    proc = cli.procs[0][0]
    assert cli.stop(proc) == 0
    beat = cli.values(cli.keys().heartbeat("m1"))  # left to its TTL for a restart to take over
    assert [json.loads(v).get("stoppedAt") for v in beat.values()] != [None], beat
    assert not cli.values(cli.keys().root + "leaders/"), "the controllers resign"


def printed_join(cli: Cli, role: str, state: Path) -> list[str]:
    """The join command `kubeless join-token ROLE` prints, as arguments after `kubeless`."""
    res = cli.run("join-token", role, "--state-dir", str(state))
    assert res.returncode == 0, res.stderr
    line = next(line for line in res.stdout.splitlines() if "kubeless" in line and "join" in line)
    args = shlex.split(line)
    assert args[0] == "kubeless"
    return args[1:]


def test_join_tokens_grant_their_roles(cli: Cli, tmp_path: Path) -> None:
    state, tokens, _ = init_cluster(cli, tmp_path)
    as_worker, as_manager = printed_join(cli, "worker", state), printed_join(cli, "manager", state)
    assert as_worker == ["--prefix", cli.prefix, "join", "--token", tokens["worker"],
                         cli.endpoints, "--insecure"]
    quiet = cli.run("join-token", "manager", "-q", "--state-dir", str(state))
    assert quiet.stdout.strip() == tokens["manager"]

    # exactly what a user pastes on another host: no KUBELESS_* in the environment
    worker = cli.start(*as_worker, "--runtime", "fake", "--node-name", "w1",
                       "--state-dir", str(tmp_path / "w1"), with_cluster=False)
    manager = cli.start(*as_manager, "--runtime", "fake", "--node-name", "m2",
                        "--state-dir", str(tmp_path / "m2"), "--labels", "zone=eu",
                        with_cluster=False)
    cli.wait_ready("w1", worker)
    cli.wait_ready("m2", manager)
    assert cli.node("w1")["spec"]["role"] == "worker"  # type: ignore[index]
    m2 = cli.node("m2")
    assert m2["spec"]["role"] == "manager"  # type: ignore[index]
    assert m2["metadata"]["labels"] == {"zone": "eu"}  # type: ignore[index]
    cli.wait_for("m2's controllers", lambda: bool(cli.values(cli.keys().manager("m2"))), manager)
    assert not cli.values(cli.keys().manager("w1")), "a worker runs no controllers"
    assert "joined cluster" in worker[1].read_text()
    for proc, _ in (worker, manager):
        assert cli.stop(proc) == 0


def test_bad_tokens_are_refused_and_register_nothing(cli: Cli, tmp_path: Path) -> None:
    state, tokens, _ = init_cluster(cli, tmp_path)
    again = cli.run("init", "--insecure", "--runtime", "fake", "--node-name", "other",
                    "--state-dir", str(tmp_path / "other"))
    assert_one_error_line(again, "already holds cluster")
    assert cli.node("other") is None

    def join(token: str, name: str, state_dir: str = "") -> subprocess.CompletedProcess[str]:
        return cli.run("join", "--insecure", "--token", token, cli.endpoints, "--runtime", "fake",
                       "--node-name", name, "--state-dir", str(tmp_path / (state_dir or name)))

    good = parse_token(tokens["worker"])
    wrong = f"SWMTKN-1-{good.digest}-{'0' * 25}"
    assert_one_error_line(join(wrong, "wrong"), "not valid", "wrong or was rotated")
    assert_one_error_line(join("SWMTKN-1-nope", "bad"), "malformed")

    rotated = cli.run("join-token", "worker", "--rotate", "--state-dir", str(state))
    assert rotated.returncode == 0, rotated.stderr
    new = TOKEN.findall(rotated.stdout)[0]
    assert new != tokens["worker"]
    assert_one_error_line(join(tokens["worker"], "old"), "rotated")
    printed = cli.run("join-token", "worker", "-q", "--state-dir", str(state))
    assert printed.stdout.strip() == new, "the state dir keeps the rotated token"

    other = Cli(cli.endpoints, cli.prefix + "-other", tmp_path)
    try:
        _, foreign, _ = init_cluster(other, tmp_path, "x1")
        assert_one_error_line(join(foreign["worker"], "foreign"), "another cluster")
    finally:
        other.close()
    for name in ("wrong", "bad", "old", "foreign"):
        assert cli.node(name) is None, f"{name} was registered"
        assert not (tmp_path / name / "node.yaml").exists()

    late = cli.start("join", "--insecure", "--token", new, cli.endpoints, "--runtime", "fake",
                     "--node-name", "late", "--state-dir", str(tmp_path / "late"))
    cli.wait_ready("late", late)
    taken = join(new, "late", "late-again")  # a fresh state dir, a name already registered
    assert_one_error_line(taken, "already registered")


def test_a_node_restarts_from_its_state_dir_without_token_or_flags(cli: Cli,
                                                                   tmp_path: Path) -> None:
    state, tokens, _ = init_cluster(cli, tmp_path)
    w1_dir = tmp_path / "w1"
    first = cli.start("join", "--insecure", "--token", tokens["worker"],
                      cli.endpoints, "--runtime", "fake",
                      "--node-name", "w1", "--state-dir", str(w1_dir))
    cli.wait_ready("w1", first)
    assert cli.stop(first[0]) == 0
    assert cli.stop(cli.procs[0][0]) == 0
    beat = cli.values(cli.keys().heartbeat("w1"))  # marked stopped, left to its TTL
    assert [json.loads(v).get("stoppedAt") for v in beat.values()] != [None], beat

    # no token, no endpoints, no prefix: all from the state dirs
    again = cli.start("join", "--state-dir", str(w1_dir), with_cluster=False)
    cli.wait_ready("w1", again)
    manager = cli.start("init", "--state-dir", str(state), with_cluster=False)
    cli.wait_ready("m1", manager)
    assert "starting it again as a manager" in manager[1].read_text()
    cli.wait_for("m1's controllers", lambda: bool(cli.values(cli.keys().manager("m1"))), manager)
    assert "starting it again as a worker" in again[1].read_text()

    refused = cli.run("join", "--insecure", "--token", tokens["worker"], cli.endpoints,
                      "--state-dir", str(w1_dir))
    assert_one_error_line(refused, "already holds node w1")
    none = cli.run("join", "--state-dir", str(tmp_path / "empty"))
    assert_one_error_line(none, "no --token given")
