"""What docker and kubectl users type from habit (issue 19), against the session's TLS etcd:
completion of kinds and names from the cluster (silent when it is unreachable), the
completion scripts of bash, zsh and fish, the global -n, --dry-run=client|server,
--env-file, --filter and --format, and inspect --pretty."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.shell_completion import ShellComplete

from kubeless_cli import main

from tests.support.cli import Run, run_cli, svc, write
from tests.support.cli_errors import assert_one_error_line
from tests.support.etcd_server import EtcdCluster, free_port
from tests.support.secrets_key import give_secrets_key

pytestmark = pytest.mark.integration

NODE = """apiVersion: kubeless.io/v1
kind: Node
metadata: {name: node-a, labels: {zone: eu}}
spec: {role: manager}
"""


@pytest.fixture
def cluster(kubeless: Run, etcd_cluster: EtcdCluster, prefix: str, tmp_path: Path) -> Run:
    """web and api in default, batch in namespace other, a node, a secret (sealed to a
    secrets key of the test's)."""
    give_secrets_key(etcd_cluster, prefix)
    applied = kubeless("apply", "-f", str(write(tmp_path / "s.yaml", svc("web"), svc("api"),
                                                svc("batch", ns="other"), NODE)))
    assert applied.returncode == 0, applied.stderr
    secret = kubeless("secret", "create", "db-password", "-", stdin="s3cret")
    assert secret.returncode == 0, secret.stderr
    return kubeless


def complete(etcd: EtcdCluster, prefix: str, line: str,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """What a TAB at the end of ``line`` offers, as click's bash script asks for it."""
    words = line.split() + ([""] if line.endswith(" ") else [])
    full = {**etcd.client_env(), **(env or {})}
    return run_cli(full["KUBELESS_ENDPOINTS"], prefix, env={
        **full, "_KUBELESS_COMPLETE": "bash_complete",
        "COMP_WORDS": " ".join(words), "COMP_CWORD": str(len(words) - 1)})


def offered(res: subprocess.CompletedProcess[str]) -> list[str]:
    assert res.returncode == 0 and res.stderr == "", res.stderr
    return [line.split(",", 1)[1] for line in res.stdout.splitlines()]


CASES = {
    "kubeless ser": ["service"],
    "kubeless get ": ["cfg", "cm", "configs", "no", "nodes", "routes", "rt", "secrets",
                      "services", "svc", "tasks"],
    "kubeless get services ": ["api", "web"],
    "kubeless get svc w": ["web"],
    "kubeless get services web ": ["api"],
    "kubeless describe service ": ["api", "web"],
    "kubeless -n other get services ": ["batch"],
    "kubeless get services -n other ": ["batch"],
    "kubeless service ps ": ["api", "web"],
    "kubeless service inspect a": ["api"],
    "kubeless service update ": ["api", "web"],
    "kubeless service rm ": ["api", "web"],
    "kubeless service logs ": ["api", "web"],
    "kubeless service scale ": ["api=", "web="],
    "kubeless node inspect ": ["node-a"],
    "kubeless node update ": ["node-a"],
    "kubeless node rm ": ["node-a"],
    "kubeless get nodes ": ["node-a"],
    "kubeless secret inspect ": ["db-password"],
    "kubeless secret rm ": ["db-password"],
}


def test_completion_offers_kinds_and_names_from_the_cluster(
        cluster: Run, etcd_cluster: EtcdCluster, prefix: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # through click's API in this process (a subprocess per line costs a second each);
    # the subprocess path, as the shells take it, is the tests below
    for name, value in {**etcd_cluster.client_env(), "KUBELESS_PREFIX": prefix}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KUBELESS_NAMESPACE", raising=False)
    found = {}
    for line in CASES:
        words = line.split()[1:]
        args, incomplete = (words, "") if line.endswith(" ") else (words[:-1], words[-1])
        completer = ShellComplete(main.cli, {}, "kubeless", "_KUBELESS_COMPLETE")
        found[line] = [item.value for item in completer.get_completions(args, incomplete)]
    assert found == CASES
    # and once as bash asks for it
    assert offered(complete(etcd_cluster, prefix, "kubeless get services ")) == ["api", "web"]


def test_completion_is_silent_when_the_cluster_is_unreachable_or_refuses(
        cluster: Run, etcd_cluster: EtcdCluster, prefix: str, tmp_path: Path) -> None:
    nowhere = {"KUBELESS_ENDPOINTS": f"https://127.0.0.1:{free_port()}"}
    no_certs = {"KUBELESS_CERT_PATH": str(tmp_path / "missing")}
    for env in (nowhere, no_certs):
        res = complete(etcd_cluster, prefix, "kubeless service ps ", env)
        assert (res.returncode, res.stdout.strip(), res.stderr) == (0, "", "")
        # command names need no cluster
        assert offered(complete(etcd_cluster, prefix, "kubeless nod", env)) == ["node"]


def test_the_completion_scripts_are_valid_and_bash_completes_through_its_script(
        cluster: Run, etcd_cluster: EtcdCluster, prefix: str) -> None:
    for shell in ("bash", "zsh", "fish"):
        script = cluster("completion", shell)
        assert script.returncode == 0 and "_KUBELESS_COMPLETE" in script.stdout, script.stderr
        checked = subprocess.run([shell, "-n"], input=script.stdout, capture_output=True,
                                 text=True, timeout=30)
        assert checked.returncode == 0, (shell, checked.stderr)
    # the bash script calls `kubeless` (this venv's) with the words typed
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, **etcd_cluster.client_env(), "KUBELESS_PREFIX": prefix,
           "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    env.pop("KUBELESS_NAMESPACE", None)
    program = ("source <(kubeless completion bash)\n"
               "COMP_WORDS=(kubeless service ps ''); COMP_CWORD=3\n"
               "_kubeless_completion kubeless '' ps\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    res = subprocess.run(["bash", "-c", program], capture_output=True, text=True, env=env,
                         timeout=30)
    assert res.stdout.split() == ["api", "web"], res.stderr


def test_a_global_namespace_reaches_every_command_and_a_commands_own_wins(
        cluster: Run) -> None:
    assert cluster("-n", "other", "get", "services", "-o", "name").stdout.split() == \
        ["service/batch"]
    assert cluster("-n", "other", "get", "services", "-n", "default", "-o",
                   "name").stdout.split() == ["service/api", "service/web"]
    created = cluster("-n", "other", "service", "create", "-d", "--name", "extra", "web:1")
    assert created.returncode == 0, created.stderr
    assert cluster("-n", "other", "service", "ls", "-q").stdout.split() == ["batch", "extra"]
    assert_one_error_line(cluster("-n", "Not_A_Namespace", "get", "services"), "invalid -n")


def test_dry_runs_write_nothing(cluster: Run, tmp_path: Path) -> None:
    manifest = write(tmp_path / "new.yaml", svc("fresh"))
    before = cluster("get", "services", "-o", "name").stdout
    client = cluster("apply", "--dry-run=client", "-f", str(manifest),
                     endpoints=f"https://127.0.0.1:{free_port()}")  # checked here, no etcd
    assert client.returncode == 0 and client.stdout == "service/fresh valid (client dry run)\n", \
        client.stderr
    server = cluster("apply", "--dry-run=server", "-f", str(manifest))
    assert server.stdout == "service/fresh created (dry run)\n", server.stderr
    create = cluster("service", "create", "-d", "--dry-run=server", "--name", "fresh", "web:1")
    assert create.stdout == "service/fresh created (dry run)\n", create.stderr
    create = cluster("service", "create", "-d", "--dry-run", "client", "--name", "fresh", "web:1")
    assert create.stdout == "service/fresh valid (client dry run)\n", create.stderr
    assert cluster("get", "services", "-o", "name").stdout == before
    assert_one_error_line(cluster("service", "create", "-d", "--dry-run=server", "--name", "web",
                                  "web:1"), 'service "web" already exists')
    assert_one_error_line(cluster("apply", "--dry-run=maybe", "-f", str(manifest)),
                          "'maybe' is not one of client, server, none")


def test_env_file_then_env(cluster: Run, tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("# settings\nA=1\n\nB=from file\n")
    res = cluster("service", "create", "-d", "--name", "envy", "--env-file", str(env_file),
                  "-e", "B=from flag", "web:1")
    assert res.returncode == 0, res.stderr
    doc = yaml.safe_load(cluster("get", "service", "envy", "-o", "yaml").stdout)
    assert doc["spec"]["template"]["env"] == {"A": "1", "B": "from flag"}
    env_file.write_text("A=1\nBAD KEY=2\n")
    assert_one_error_line(cluster("service", "create", "-d", "--name", "bad", "--env-file",
                                  str(env_file), "web:1"), "app.env line 2")
    assert_one_error_line(cluster("service", "create", "-d", "--env-file", str(tmp_path / "none"),
                                  "web:1"), "invalid --env-file")
    assert cluster("get", "service", "bad").returncode != 0


def test_filter_format_and_pretty(cluster: Run) -> None:
    res = cluster("service", "ls", "--filter", "name=we", "--format", "{{.Name}}\\t{{.Image}}")
    assert res.stdout == "web\tweb:1\n", res.stderr
    table = cluster("service", "ls", "--format", "table {{.Name}}\\t{{.Replicas}}")
    assert table.stdout.splitlines() == ["NAME   REPLICAS", "api    0/1", "web    0/1"]
    assert_one_error_line(cluster("service", "ls", "--format", "{{.Colour}}"),
                          "unknown field .Colour")
    assert_one_error_line(cluster("service", "ls", "--filter", "colour=red"), "unknown key")
    nodes = cluster("node", "ls", "--filter", "role=manager", "--format", "{{.ID}} {{.Status}}")
    assert nodes.stdout == "node-a Down\n", nodes.stderr
    assert "Down" in cluster("get", "nodes").stdout  # as node ls says it, not "down"
    pretty = cluster("node", "inspect", "--pretty", "node-a").stdout
    assert "Manager Status:" in pretty and " - zone=eu" in pretty, pretty
    pretty = cluster("service", "inspect", "--pretty", "web").stdout
    assert "Service Mode:" in pretty and "ContainerSpec:" in pretty, pretty
