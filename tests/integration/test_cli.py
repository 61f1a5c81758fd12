"""The kubeless CLI as a user runs it: a subprocess against a real etcd."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lab.waiting import until
from tests.support.agents import agent_flags
from tests.support.cli import Run, names, svc, write
from tests.support.etcd_server import EtcdCluster, free_port

pytestmark = pytest.mark.integration


def assert_clean_error(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert res.returncode != 0, res.stdout
    assert res.stderr.startswith("error: "), res.stderr
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in res.stderr, res.stderr


def test_apply_then_get_shows_table(kubeless: Run, tmp_path: Path) -> None:
    f = write(tmp_path / "s.yaml", svc("web", 3), svc("api", 2, "api:1"))
    res = kubeless("apply", "-f", str(f))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["service/web created", "service/api created"]
    table = kubeless("get", "services")
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NAME", "MODE", "REPLICAS", "IMAGE", "PORTS", "AGE"]
    assert lines[1].split()[:4] == ["api", "replicated", "0/2", "api:1"]
    assert lines[2].split()[:4] == ["web", "replicated", "0/3", "web:1"]


def test_apply_is_idempotent_and_bumps_generation_on_spec_change(kubeless: Run,
                                                                 tmp_path: Path) -> None:
    f = write(tmp_path / "s.yaml", svc("web", 1))
    assert kubeless("apply", "-f", str(f)).returncode == 0
    again = kubeless("apply", "-f", str(f))
    assert again.stdout.strip() == "service/web unchanged"
    rv = yaml.safe_load(kubeless("get", "svc", "web", "-o", "yaml").stdout)["metadata"]
    assert kubeless("apply", "-f", str(f)).returncode == 0
    assert yaml.safe_load(kubeless("get", "svc", "web", "-o", "yaml").stdout)["metadata"][
        "resourceVersion"] == rv["resourceVersion"], "unchanged writes nothing"
    write(f, svc("web", 4))
    assert kubeless("apply", "-f", str(f)).stdout.strip() == "service/web configured"
    meta = yaml.safe_load(kubeless("get", "svc", "web", "-o", "yaml").stdout)["metadata"]
    assert meta["generation"] == 2
    write(f, svc("web", 4, labels="{team: a}"))
    assert kubeless("apply", "-f", str(f)).stdout.strip() == "service/web configured"
    meta = yaml.safe_load(kubeless("get", "svc", "web", "-o", "yaml").stdout)["metadata"]
    assert meta["generation"] == 2, "a label change alone is not a new spec"


def test_apply_is_all_or_nothing_on_invalid_document(kubeless: Run, tmp_path: Path) -> None:
    bad = svc("bad", -1).replace("image: web:1", "image: x\n    mounts: [{type: nfs}]")
    f = write(tmp_path / "s.yaml", svc("good"), bad)
    res = kubeless("apply", "-f", str(f))
    assert_clean_error(res, "nothing was written", "spec.replicas: -1 is less than the minimum of 0",
                       "spec.template.mounts[0].type", f"{f}:")
    assert names(kubeless) == []


def test_apply_takes_kubeless_namespace_as_the_default(kubeless: Run, tmp_path: Path) -> None:
    """KUBELESS_NAMESPACE is what kubectl's context namespace is: the namespace of documents
    that declare none; a declared one stays (only -n makes a different one an error)."""
    f = write(tmp_path / "two.yaml", svc("plain"), svc("declared", ns="other"))
    res = kubeless("apply", "-f", str(f), namespace="team")
    assert res.returncode == 0, res.stderr
    assert names(kubeless, "-n", "team") == ["service/plain"]
    assert names(kubeless, "-n", "other") == ["service/declared"]


def test_apply_folder_recursive_and_stdin(kubeless: Run, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path / "a.yaml", svc("a"))
    write(tmp_path / "sub" / "b.yml", svc("b"))
    (tmp_path / "notes.txt").write_text("not a manifest")
    assert kubeless("apply", "-f", str(tmp_path)).returncode == 0
    assert names(kubeless) == ["service/a"]
    assert kubeless("apply", "-R", "-f", str(tmp_path)).returncode == 0
    assert names(kubeless) == ["service/a", "service/b"]
    assert kubeless("apply", "-f", "-", stdin=svc("c")).returncode == 0
    assert "service/c" in names(kubeless)


def test_dry_run_writes_nothing(kubeless: Run, tmp_path: Path) -> None:
    res = kubeless("apply", "--dry-run", "-f", str(write(tmp_path / "s.yaml", svc("web"))))
    assert res.stdout.strip() == "service/web created (dry run)"
    assert names(kubeless) == []


def test_prune_deletes_labelled_services_no_longer_declared(kubeless: Run,
                                                            tmp_path: Path) -> None:
    f = write(tmp_path / "s.yaml", svc("a", labels="{owner: git}"), svc("b", labels="{owner: git}"),
              svc("c"))
    assert kubeless("apply", "-f", str(f)).returncode == 0
    write(f, svc("a", labels="{owner: git}"))
    res = kubeless("apply", "-f", str(f), "--prune", "-l", "owner=git")
    assert res.returncode == 0, res.stderr
    assert "service/b pruned" in res.stdout
    assert names(kubeless) == ["service/a", "service/c"], "unlabelled c is not the pipeline's"
    assert_clean_error(kubeless("apply", "-f", str(f), "--prune"), "label selector")


def test_diff_exit_codes(kubeless: Run, tmp_path: Path) -> None:
    f = write(tmp_path / "s.yaml", svc("web", 1))
    assert kubeless("diff", "-f", str(f)).returncode == 1  # not there yet
    kubeless("apply", "-f", str(f))
    same = kubeless("diff", "-f", str(f))
    assert (same.returncode, same.stdout) == (0, "")
    write(f, svc("web", 5))
    changed = kubeless("diff", "-f", str(f))
    assert changed.returncode == 1
    assert "-  replicas: 1" in changed.stdout and "+  replicas: 5" in changed.stdout
    write(f, "kind: Nope\n")
    assert kubeless("diff", "-f", str(f)).returncode == 2


def test_get_outputs_selectors_and_namespaces(kubeless: Run, tmp_path: Path) -> None:
    f = write(tmp_path / "s.yaml", svc("a", labels="{tier: web}"), svc("b", labels="{tier: db}"),
              svc("c", ns="prod", labels="{tier: web}"))
    assert kubeless("apply", "-f", str(f)).returncode == 0
    assert names(kubeless, "-l", "tier=web") == ["service/a"]
    assert names(kubeless, "-A", "-l", "tier=web") == ["service/a", "service/c"]
    assert names(kubeless, "-n", "prod") == ["service/c"]
    one = yaml.safe_load(kubeless("get", "svc", "a", "-o", "yaml").stdout)
    assert one["kind"] == "Service" and one["spec"]["replicas"] == 1
    many = yaml.safe_load(kubeless("get", "svc", "-o", "json").stdout)
    assert many["kind"] == "List" and len(many["items"]) == 2
    wide = kubeless("get", "svc", "-o", "wide", "-A").stdout.splitlines()[0].split()
    assert wide[:2] == ["NAMESPACE", "NAME"] and "GENERATION" in wide
    assert_clean_error(kubeless("get", "svc", "nope"), 'service "nope" not found')
    assert_clean_error(kubeless("get", "pods"), "known kinds are Config, Node, Route, Secret, Service, Task")


def test_describe_and_delete(kubeless: Run, tmp_path: Path) -> None:
    f = write(tmp_path / "s.yaml", svc("a"), svc("b"))
    kubeless("apply", "-f", str(f))
    desc = kubeless("describe", "service", "a").stdout
    assert "Name:          a" in desc and "Spec:" in desc and "image: web:1" in desc
    assert kubeless("delete", "service", "a").stdout.strip() == 'service "a" deleted'
    assert names(kubeless) == ["service/b"]
    assert_clean_error(kubeless("delete", "service", "a"), 'service "a" not found')
    assert kubeless("delete", "service", "a", "--ignore-not-found").returncode == 0
    assert kubeless("delete", "-f", str(write(tmp_path / "b.yaml", svc("b")))).returncode == 0
    assert names(kubeless) == []


def test_swarm_service_verbs(kubeless: Run) -> None:
    res = kubeless("service", "create", "-d", "--name", "web", "--replicas", "2", "--publish",
                   "8080:80", "--env", "A=1", "--constraint", "node.role==worker",
                   "--reserve-memory", "64Mi", "--update-parallelism", "2", "web:1",
                   "httpd", "-f", "-p", "80")
    assert res.returncode == 0, res.stderr
    doc = yaml.safe_load(kubeless("get", "svc", "web", "-o", "yaml").stdout)
    spec = doc["spec"]
    assert spec["replicas"] == 2 and spec["template"]["env"] == {"A": "1"}
    assert spec["ports"][0]["published"] == 8080 and spec["update"]["parallelism"] == 2
    assert spec["template"]["args"][-3:] == ["-f", "-p", "80"]
    assert kubeless("service", "scale", "-d", "web=5").stdout.strip() == "web scaled to 5"
    assert kubeless("service", "update", "-d", "--image", "web:2", "--env-add", "B=2", "web").returncode == 0
    doc = yaml.safe_load(kubeless("get", "svc", "web", "-o", "yaml").stdout)
    assert doc["spec"]["replicas"] == 5 and doc["spec"]["template"]["image"] == "web:2"
    assert doc["spec"]["template"]["env"] == {"A": "1", "B": "2"}
    assert doc["metadata"]["generation"] == 3
    assert kubeless("service", "update", "-d", "--force", "web").returncode == 0
    doc = yaml.safe_load(kubeless("get", "svc", "web", "-o", "yaml").stdout)
    assert doc["spec"]["forceUpdate"] == 1
    ls = kubeless("service", "ls").stdout.splitlines()
    assert ls[0].split() == ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]
    assert ls[1].split()[1:] == ["web", "replicated", "0/5", "web:2", "*:8080->80/tcp"]
    assert '"name": "web"' in kubeless("service", "inspect", "web").stdout
    # What service create stores is what apply would store from the same spec.
    applied = kubeless("diff", "-f", "-", stdin=yaml.safe_dump(
        {k: doc[k] for k in ("apiVersion", "kind", "metadata", "spec")}))
    assert applied.returncode == 0, applied.stdout
    assert kubeless("service", "rm", "web").stdout.strip() == "web"
    assert names(kubeless) == []


def test_the_seeds_commands_with_boolean_values(kubeless: Run) -> None:
    """docker service create/update --detach=true (the seed's exact command), -p, --force=."""
    res = kubeless("service", "create", "-d", "--detach=true", "--name", "web", "--replicas", "3",
                   "-p", "8080:80", "web:1")
    assert res.returncode == 0, res.stderr
    assert kubeless("service", "update", "-d", "--detach=true", "--update-parallelism", "2",
                    "--update-delay", "10s", "--image", "web:2", "web").returncode == 0
    assert kubeless("service", "update", "-d", "--force=false", "-d=false", "web").returncode == 0
    doc = yaml.safe_load(kubeless("get", "svc", "web", "-o", "yaml").stdout)
    spec = doc["spec"]
    assert spec["replicas"] == 3 and spec["ports"][0]["published"] == 8080
    assert spec["template"]["image"] == "web:2" and spec["update"]["delay"] == "10s"
    assert spec["forceUpdate"] == 0 and doc["metadata"]["generation"] == 2
    bad = kubeless("service", "update", "-d", "--force=maybe", "web")
    assert bad.returncode == 2 and bad.stderr.strip() == \
        "error: Option '--force' takes true or false, not 'maybe'."
    assert yaml.safe_load(kubeless("get", "svc", "web", "-o", "yaml").stdout) == doc


async def test_node_ls_marks_this_node_and_shows_the_engine_version(
        kubeless: Run, etcd_cluster: EtcdCluster, prefix: str, tmp_path: Path,
        procs: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Three hollow nodes of a fake-runtime agent on real etcd (their Nodes written by an
    admin, as the join endpoint does); the CLI's state dir names n-1."""
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "kubeless_agent",
         *agent_flags(etcd_cluster, prefix, "n", hollow_nodes=3),
         "--prefix", prefix, "--runtime", "fake", "--node-name", "n", "--hollow-nodes", "3",
         "--heartbeat-ttl", "3", "--log-level", "WARNING"], start_new_session=True))
    state = tmp_path / "state"
    state.mkdir()
    (state / "node-id").write_text("n-1\n")
    monkeypatch.setenv("KUBELESS_STATE_DIR", str(state))

    def all_ready() -> list[str] | None:
        rows = kubeless("node", "ls").stdout.splitlines()
        return rows if len(rows) == 4 and all(" Ready " in r for r in rows[1:]) else None
    rows = await until(lambda: asyncio.to_thread(all_ready), 20, "three nodes Ready")
    assert rows[0].split("  ")[0] == "ID" and rows[0].rstrip().endswith("ENGINE VERSION")
    assert [r.split()[:2] for r in rows[1:]] == [["n-0", "n-0"], ["n-1", "*"], ["n-2", "n-2"]]
    assert all(r.rstrip().endswith(" fake") for r in rows[1:])
    assert kubeless("node", "ls", "-q").stdout.split() == ["n-0", "n-1", "n-2"]
    assert kubeless("node", "ls", "--quiet=true").stdout.split() == ["n-0", "n-1", "n-2"]


def test_service_verbs_bad_input(kubeless: Run) -> None:
    assert_clean_error(kubeless("service", "create", "-d", "--publish", "99999", "x:1"), "--publish")
    assert_clean_error(kubeless("service", "create", "-d", "--mode", "global", "--replicas", "2", "x:1"),
                       "--replicas")
    assert_clean_error(kubeless("service", "create", "-d", "--name", "Bad_Name", "x:1"), "Bad_Name")
    assert_clean_error(kubeless("service", "scale", "-d", "web=x"), "SERVICE=REPLICAS")
    assert_clean_error(kubeless("service", "update", "-d", "--image", "x:2", "nope"), '"nope" not found')
    kubeless("service", "create", "-d", "--name", "g", "--mode", "global", "x:1")
    assert_clean_error(kubeless("service", "scale", "-d", "g=3"), "global")
    assert_clean_error(kubeless("service", "create", "-d", "--name", "g", "x:1"), "already exists")
    assert_clean_error(kubeless("service", "rm", "nope"), "no such service: nope")


@pytest.mark.parametrize("content, needles", [
    ("a: [1\n", ["could not parse YAML", ":2:1"]),
    ("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n", ['unknown apiVersion "v1"',
                                                            "kubeless.io/v1"]),
    ("apiVersion: kubeless.io/v1\nkind: Pod\nmetadata: {name: a}\n",
     ['unknown kind "Pod"', "known kinds are Config, Node, Route, Secret, Service, Task"]),
    ("- just\n- a list\n", ["must be a mapping"]),
    (svc("Web_1"), ['"Web_1" is not a valid name']),
    (svc("a").replace("replicas: 1", "replicas: -1\n  replcas: 2"),
     ["2 errors", "spec.replicas: -1 is less than the minimum of 0", "spec.replcas"]),
])
def test_bad_input_is_one_clear_error_and_writes_nothing(kubeless: Run, tmp_path: Path,
                                                         content: str, needles: list[str]) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(content)
    assert_clean_error(kubeless("apply", "-f", str(f)), *needles)
    assert names(kubeless) == []


def test_document_over_one_mebibyte_is_refused(kubeless: Run, tmp_path: Path) -> None:
    big = svc("big").replace("spec:", "  annotations: {blob: " + "x" * (1024 * 1024 + 10)
                             + "}\nspec:")
    f = tmp_path / "big.yaml"
    f.write_text(big)
    assert_clean_error(kubeless("apply", "-f", str(f)), "the limit is 1048576 bytes")
    assert names(kubeless) == []


def test_missing_file(kubeless: Run) -> None:
    assert_clean_error(kubeless("apply", "-f", "/nonexistent.yaml"), "no such file")


@pytest.mark.parametrize("scheme, cli", [("https", "kubeless"), ("http", "plain_kubeless")])
def test_unreachable_etcd_names_endpoints_and_fails_fast(scheme: str, cli: str,
                                                         request: pytest.FixtureRequest) -> None:
    kubeless: Run = request.getfixturevalue(cli)
    dead = f"{scheme}://127.0.0.1:{free_port()},{scheme}://127.0.0.1:{free_port()}"
    import time
    started = time.monotonic()
    res = kubeless("get", "services", endpoints=dead)
    assert time.monotonic() - started < 8
    assert_clean_error(res, "etcd", dead.split(",")[0], dead.split(",")[1])


def test_corrupt_value_in_etcd_is_listed_with_a_warning(kubeless: Run, etcd_cluster: EtcdCluster,
                                                        prefix: str) -> None:
    """More in test_bad_data.py: describe, -o yaml, delete."""
    kubeless("apply", "-f", "-", stdin=svc("good"))
    subprocess.run(["/usr/bin/etcdctl", *etcd_cluster.client_flags(), "put",
                    f"{prefix}/v1/spec/services/default/broken", "{not: [yaml"],
                   check=True, capture_output=True, env={**os.environ, "ETCDCTL_API": "3"})
    res = kubeless("get", "services")
    assert res.returncode == 0
    assert "good" in res.stdout and "broken   <invalid>" in res.stdout
    assert 'warning: service "broken" is invalid: not valid YAML' in res.stderr
