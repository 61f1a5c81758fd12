"""The plain path, asked for by name: the CLI, kubeless-agent and kubeless-controllers
started on their own against a plain ``http://`` etcd with auth off keep working
(tests, hollow-node benchmarks), while every other suite runs over TLS.

``plain_etcd`` (conftest) and processes as a user starts them, with no
``--cacert``/``--cert``/``--key`` and no ``KUBELESS_CERT_PATH``: the controllers
and a fake-runtime agent of two hollow nodes schedule and run what ``kubeless
apply`` writes, and ``kubeless get`` and ``service ps`` show it. The TLS etcd of
the session refuses the same plain client (no CA for https://). A test reaches
either etcd with the same calls (``client_flags``, ``client_env``,
``client_tls``): nothing for TLS on a plain one, an identity per common name,
made once, on a TLS one.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from kubeless.cluster.pki import cert_info
from lab.waiting import wait_until
from tests.support.cli import Run, run_cli, svc
from tests.support.cli_errors import assert_one_error_line
from tests.support.etcd_server import EtcdCluster

pytestmark = pytest.mark.integration


def spawn(module: str, endpoints: str, prefix: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", module, "--endpoints", endpoints,
                             "--prefix", prefix, *args, "--log-level", "WARNING"],
                            start_new_session=True)


def test_cli_agent_and_controllers_on_plain_http(
        plain_etcd: EtcdCluster, plain_kubeless: Run, prefix: str,
        procs: list[subprocess.Popen[bytes]]) -> None:
    assert plain_etcd.endpoints.startswith("http://")
    procs.append(spawn("controllers", plain_etcd.endpoints, prefix, "--identity", "plain-m",
                       "--lease-ttl", "2"))
    procs.append(spawn("kubeless_agent", plain_etcd.endpoints, prefix, "--runtime", "fake",
                       "--node-name", "plain", "--hollow-nodes", "2", "--heartbeat-ttl", "3"))
    applied = plain_kubeless("apply", "-f", "-", stdin=svc("web", replicas=3))
    assert applied.returncode == 0 and applied.stderr == "", applied.stderr
    assert plain_kubeless("get", "services", "-o", "name").stdout.split() == ["service/web"]

    def running() -> list[str] | None:
        assert all(p.poll() is None for p in procs), "a daemon exited"
        rows = plain_kubeless("service", "ps", "web").stdout.splitlines()[1:]
        nodes = [r.split()[3] for r in rows if " Running " in r]
        return nodes if len(nodes) == 3 else None
    nodes = wait_until(running, 30, "3 tasks of web running on the hollow nodes")
    assert set(nodes) <= {"plain-0", "plain-1"}


def test_a_plain_client_is_refused_by_the_tls_etcd(etcd_cluster: EtcdCluster,
                                                   prefix: str) -> None:
    res = run_cli(etcd_cluster.endpoints, prefix, "get", "services")
    assert_one_error_line(res, "https:// etcd endpoints need the CA certificate")
    assert res.returncode == 1


def test_the_same_calls_reach_a_plain_and_a_tls_etcd(plain_etcd: EtcdCluster,
                                                      etcd_cluster: EtcdCluster,
                                                      prefix: str) -> None:
    assert plain_etcd.client_flags("node:x", prefix) == ["--endpoints", plain_etcd.endpoints]
    assert plain_etcd.client_env() == {"KUBELESS_ENDPOINTS": plain_etcd.endpoints}
    assert plain_etcd.client_tls() is None

    admin, node = etcd_cluster.client_identity(), etcd_cluster.client_identity("node:x", prefix)
    assert admin is not None and node is not None and admin != node
    assert etcd_cluster.client_identity() == admin, "made once per common name"
    assert cert_info((admin / "cert.pem").read_text()).common_name == "admin:tests"
    assert cert_info((node / "cert.pem").read_text()).common_name == "node:x"
    assert etcd_cluster.client_flags("node:x", prefix) == [
        "--endpoints", etcd_cluster.endpoints, "--cacert", str(node / "ca.pem"),
        "--cert", str(node / "cert.pem"), "--key", str(node / "key.pem")]
    assert etcd_cluster.client_env() == {"KUBELESS_ENDPOINTS": etcd_cluster.endpoints,
                                         "KUBELESS_CERT_PATH": str(admin)}
