"""Joining through a manager's join endpoint (``kubeless join --token T HOST:PORT``), for real.

A TLS etcd of the module's own (init turns etcd's auth on), ``kubeless init`` with
the admin identity and
``--join-port`` on a free port, its state dir holding the CA etcd trusts (as
``kubeless certs ca`` leaves it), nodes that join through it with the fake
runtime and reach etcd with the certificates they receive; every process is
ended by its pid in the fixture's finalizer.
"""

from __future__ import annotations

import shlex
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kubeless.cluster.pki import CA, cert_info, load_cert
from tests.integration.test_init_join import TOKEN, Cli
from tests.support.cli_errors import assert_one_error_line
from tests.support.etcd_server import EtcdCluster, free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def init_etcd() -> Iterator[EtcdCluster]:
    """A TLS etcd of this module's own with auth off, as a user's etcd is before
    ``init``: init turns etcd's auth on (and the later inits converge)."""
    cluster = EtcdCluster(1, tls=True, auth=False).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cli(init_etcd: EtcdCluster, prefix: str, tmp_path: Path) -> Iterator[Cli]:
    c = Cli(init_etcd.endpoints, prefix, tmp_path, init_etcd.client_identity())
    yield c
    c.close()


@pytest.fixture
def cluster_ca(init_etcd: EtcdCluster) -> CA:
    """The CA the module's etcd trusts: init's cluster CA, put in its state dir first."""
    assert init_etcd.ca is not None
    return init_etcd.ca


def serving(port: int) -> bool:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/ca", timeout=2,
                                    context=context) as r:
            return b"BEGIN CERTIFICATE" in r.read()
    except OSError:
        return False


def init_manager(cli: Cli, tmp: Path, ca: CA,
                 name: str = "m1") -> tuple[Path, dict[str, str], int, str]:
    """A first manager serving its join endpoint: (state dir, tokens, join port, output)."""
    port = free_port()
    state = tmp / name
    ca.save(state)
    proc = cli.start("init", "--runtime", "fake", "--node-name", name, "--state-dir",
                     str(state), "--join-port", str(port))
    cli.wait_ready(name, proc)
    cli.wait_for(f"{name}'s join endpoint", lambda: serving(port), proc)
    out = proc[1].read_text()
    worker, manager = TOKEN.findall(out)[:2]
    return state, {"worker": worker, "manager": manager}, port, out


def identity(directory: Path, ca_pem: str) -> str:
    """The common name of the identity in ``directory``, checked: signed by the CA, key 0600."""
    assert (directory / "key.pem").stat().st_mode & 0o777 == 0o600
    assert (directory / "ca.pem").read_text() == ca_pem
    cert = (directory / "cert.pem").read_text()
    load_cert(cert).verify_directly_issued_by(load_cert(ca_pem))
    return cert_info(cert).common_name


def test_a_worker_joins_through_the_endpoint_with_its_own_identity(cli: Cli, tmp_path: Path,
                                                                  cluster_ca: CA) -> None:
    m1, tokens, port, out = init_manager(cli, tmp_path, cluster_ca)
    command = f"kubeless join --token {tokens['worker']} 127.0.0.1:{port}"
    assert command in out
    ca_pem = (m1 / "ca.crt").read_text()
    assert identity(m1 / "tls", ca_pem) == "node:m1"
    assert identity(m1 / "manager-tls", ca_pem) == "manager:m1"
    printed = cli.run("join-token", "worker", "--state-dir", str(m1))
    assert command in printed.stdout

    # the command as printed, on a host with no KUBELESS_* settings
    w1 = tmp_path / "w1"
    proc = cli.start(*shlex.split(command)[1:], "--runtime", "fake", "--node-name", "w1",
                     "--state-dir", str(w1), "--labels", "zone=eu", with_cluster=False)
    cli.wait_ready("w1", proc)
    node = cli.node("w1")
    assert node is not None and node["spec"]["role"] == "worker"  # type: ignore[index]
    assert node["metadata"]["labels"] == {"zone": "eu"}  # type: ignore[index]
    assert identity(w1 / "tls", ca_pem) == "node:w1"
    assert "127.0.0.1" in cert_info((w1 / "tls" / "cert.pem").read_text()).hosts
    assert not (w1 / "ca.key").exists() and not (w1 / "manager-tls").exists()
    stored = yaml.safe_load((w1 / "node.yaml").read_text())
    assert (stored["endpoints"], stored["prefix"]) == (cli.endpoints, cli.prefix)
    assert stored["role"] == "worker"
    assert not cli.values(cli.keys().manager("w1")), "a worker runs no controllers"
    assert cli.stop(proc[0]) == 0


def test_a_manager_joins_with_the_ca_key_and_signs_in_turn(cli: Cli, tmp_path: Path,
                                                           cluster_ca: CA) -> None:
    m1, tokens, port, _ = init_manager(cli, tmp_path, cluster_ca)
    ca_pem = (m1 / "ca.crt").read_text()
    m2, port2 = tmp_path / "m2", free_port()
    proc = cli.start("join", "--token", tokens["manager"], f"127.0.0.1:{port}", "--runtime",
                     "fake", "--node-name", "m2", "--state-dir", str(m2), "--join-port",
                     str(port2), with_cluster=False)
    cli.wait_ready("m2", proc)
    assert cli.node("m2")["spec"]["role"] == "manager"  # type: ignore[index]
    assert identity(m2 / "tls", ca_pem) == "node:m2"
    assert identity(m2 / "manager-tls", ca_pem) == "manager:m2"
    assert (m2 / "ca.key").stat().st_mode & 0o777 == 0o600
    cli.wait_for("m2's controllers", lambda: bool(cli.values(cli.keys().manager("m2"))), proc)

    # any manager can sign: a worker joins through m2's endpoint
    cli.wait_for("m2's join endpoint", lambda: serving(port2), proc)
    w2 = tmp_path / "w2"
    worker = cli.start("join", "--token", tokens["worker"], f"127.0.0.1:{port2}", "--runtime",
                       "fake", "--node-name", "w2", "--state-dir", str(w2), with_cluster=False)
    cli.wait_ready("w2", worker)
    assert identity(w2 / "tls", ca_pem) == "node:w2"
    for p, _ in (worker, proc):
        assert cli.stop(p) == 0


def test_refused_joins_write_nothing(cli: Cli, tmp_path: Path, cluster_ca: CA,
                                     plain_etcd: EtcdCluster) -> None:
    _, tokens, port, _ = init_manager(cli, tmp_path, cluster_ca)
    address = f"127.0.0.1:{port}"

    def join(token: str, name: str, where: str = address) -> object:
        return cli.run("join", "--token", token, where, "--runtime", "fake", "--node-name",
                       name, "--state-dir", str(tmp_path / name), with_cluster=False)

    digest = TOKEN.findall(tokens["worker"])[0].split("-")[2]
    wrong = f"SWMTKN-1-{digest}-{'0' * 25}"
    assert_one_error_line(join(wrong, "wrong"), f"the manager at {address} refused",  # type: ignore[arg-type]
                          "not valid")
    assert_one_error_line(join(tokens["worker"], "root"), "reserved")  # type: ignore[arg-type]

    other = Cli(plain_etcd.endpoints, cli.prefix + "-other", tmp_path)  # another CA: elsewhere
    try:
        proc = other.start("init", "--insecure", "--runtime", "fake", "--node-name", "x1",
                           "--state-dir",
                           str(tmp_path / "x1"), "--join-port", "0")
        other.wait_ready("x1", proc)
        foreign = TOKEN.findall(proc[1].read_text())[0]
        assert "join endpoint" not in proc[1].read_text(), "--join-port 0 serves none"
    finally:
        other.close()
    assert_one_error_line(join(foreign, "foreign"),  # type: ignore[arg-type]
                          f"the manager at {address} does not belong to the cluster of this token")
    closed = f"127.0.0.1:{free_port()}"
    assert_one_error_line(join(tokens["worker"], "unreached", closed),  # type: ignore[arg-type]
                          f"cannot reach the join endpoint at {closed}")

    rotated = cli.run("join-token", "worker", "--rotate", "--state-dir", str(tmp_path / "m1"))
    assert rotated.returncode == 0, rotated.stderr
    assert_one_error_line(join(tokens["worker"], "old"), "not valid")  # type: ignore[arg-type]
    for name in ("wrong", "root", "foreign", "unreached", "old"):
        assert cli.node(name) is None, f"{name} was registered"
        assert not (tmp_path / name / "node.yaml").exists()
        assert not (tmp_path / name / "tls").exists()


# -- the server itself, in this process, against the same etcd ----------------------------

async def test_the_server_refuses_what_the_client_would_not_send(
        rstore: object, tmp_path: Path) -> None:
    """Requests a well-behaved client never sends: each refused with its status, nothing
    written; the CA is the only thing served without a token."""
    import asyncio
    import http.client
    import json

    from kubeless import store
    from kubeless.cluster import bootstrap, join_client
    from kubeless.cluster.errors import JoinFailed
    from kubeless.cluster.join_server import JoinServer
    from kubeless.cluster.pki import CA, make_csr, new_key
    from kubeless.cluster.state import StateDir

    assert isinstance(rstore, store.ResourceStore)
    state = StateDir(tmp_path / "m1")
    node = {"apiVersion": "kubeless.io/v1", "kind": "Node", "metadata": {"name": "m1"},
            "spec": {"role": "manager", "availability": "active"}}
    _, tokens = await bootstrap.create_cluster(rstore, state, node, "etcd")
    made: list[str] = []

    def make_node(request: object, role: str) -> dict[str, object]:
        made.append(role)
        return {**node, "metadata": {"name": request.node_name},  # type: ignore[attr-defined]
                "spec": {"role": role, "availability": "active"}}

    server = JoinServer(rstore, CA.load(state.path), make_node, "http://etcd:2379", "/p",
                        ("127.0.0.1",), 0)
    port = await server.start()
    ca = (state.path / "ca.crt").read_text()
    try:
        def post(**changes: object) -> str:
            body = {"token": tokens["worker"], "nodeName": "w1", "advertiseAddr": "127.0.0.1",
                    "runtime": "fake", "csr": make_csr(new_key(), "node:w1"), **changes}
            try:
                reply = join_client.post_join("127.0.0.1", port, "m1", ca, body)
            except JoinFailed as err:
                return str(err)
            return json.dumps(reply)

        def get(path: str, method: str = "GET") -> int:
            conn = http.client.HTTPSConnection("127.0.0.1", port,
                                               context=ssl.create_default_context(cadata=ca))
            conn.request(method, path)
            status = conn.getresponse().status
            conn.close()
            return status

        assert "reserved" in await asyncio.to_thread(post, nodeName="root")
        assert "not valid" in await asyncio.to_thread(
            post, token=tokens["worker"][:-1] + ("1" if tokens["worker"][-1] != "1" else "2"))
        assert "managerCsr is missing" in await asyncio.to_thread(post,
                                                                  token=tokens["manager"])
        garbled = ("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                   "-----END CERTIFICATE REQUEST-----\n")
        assert "not a PEM certificate request" in await asyncio.to_thread(post, csr=garbled)
        assert made == [], "nothing registered for a refused request"
        assert await rstore.get("Node", "w1") is None and await rstore.get("Node", "root") is None
        assert await asyncio.to_thread(join_client.fetch_ca, "127.0.0.1", port, "m1") == ca
        assert await asyncio.to_thread(get, "/nope") == 404
        assert await asyncio.to_thread(get, "/join") == 405

        reply = json.loads(await asyncio.to_thread(post))
        assert reply["role"] == "worker" and "caKey" not in reply
        assert (reply["endpoints"], reply["prefix"]) == ("http://etcd:2379", "/p")
        assert await rstore.get("Node", "w1") is not None
    finally:
        await server.close()
