"""Secrets and Configs through the CLI, on the session's TLS etcd with auth on.

The Swarm verbs (``secret|config create|ls|inspect|rm``), ``apply`` and the
kubectl verbs, the bytes etcd holds (a Secret's value never in them), removal
refused while a Service uses one (and the guarded delete's retry when a
Service starts using it meanwhile), and bad input: one line, nothing written.
Every command's output is kept, and none may hold the value.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from kubeless.api import validate
from kubeless.api.errors import InUse
from kubeless.api.file_refs import MAX_BYTES
from kubeless.cluster import sealing
from kubeless.cluster.secrets import Doomed, create, delete_resources
from kubeless.store import Put, ResourceStore
from tests.support.cli import Run
from tests.support.cli_errors import assert_one_error_line
from tests.support.etcd_server import EtcdCluster, put_raw
from tests.support.secrets_key import give_secrets_key
from tests.support.unwritten import keyspace, written

pytestmark = pytest.mark.integration

VALUE = "kinds-hunter2-s3cret"
VALUE_B64 = base64.b64encode(VALUE.encode()).decode()


class Cli:
    """The CLI on the test's prefix, keeping every output to check none holds the value."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.outputs: list[str] = []

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        res = self.run(*args, stdin=stdin)
        self.outputs.append(res.stdout + res.stderr)
        return res

    def ok(self, *args: str, stdin: str | None = None) -> str:
        res = self(*args, stdin=stdin)
        assert res.returncode == 0, res.stderr
        return res.stdout


@pytest.fixture
def sealed_key(etcd_cluster: EtcdCluster, prefix: str, kubeless: Run) -> X25519PrivateKey:
    """The cluster's secrets key, put in the test prefix's record (after ``kubeless``
    marked it)."""
    key = give_secrets_key(etcd_cluster, prefix)
    assert key is not None
    return key


@pytest.fixture
def cli(kubeless: Run, sealed_key: X25519PrivateKey) -> Iterator[Cli]:
    runner = Cli(kubeless)
    yield runner
    for output in runner.outputs:
        assert VALUE not in output and VALUE_B64 not in output, output


def secret_doc(name: str = "dbpass", value: str = VALUE, labels: dict[str, str] | None = None,
               kind: str = "Secret") -> str:
    return yaml.safe_dump({"apiVersion": "kubeless.io/v1", "kind": kind,
                           "metadata": {"name": name, "labels": labels or {"app": "db"}},
                           "stringData": value})


async def raw(rstore: ResourceStore, kind: str, name: str, ns: str = "default") -> bytes:
    key = rstore.keys.spec(kind, name, ns)
    kvs, _ = await rstore.etcd.get_many([key])
    return kvs[key].value if key in kvs else b""


def reference(etcd_cluster: EtcdCluster, prefix: str, service: str, **template: Any) -> None:
    """A Service whose template references secrets or configs, put as raw YAML (the
    template fields are another part's; this test needs only the stored shape)."""
    doc = {"apiVersion": "kubeless.io/v1", "kind": "Service",
           "metadata": {"name": service, "namespace": "default", "uid": f"uid-{service}",
                        "generation": 1},
           "spec": {"template": {"image": "web:1", **template}}}
    put_raw(etcd_cluster, f"{prefix}/v1/spec/services/default/{service}",
            yaml.safe_dump(doc).encode())


# -- the Swarm verbs -------------------------------------------------------------------

async def test_create_ls_inspect_rm(cli: Cli, tmp_path: Path, rstore: ResourceStore,
                                    sealed_key: X25519PrivateKey) -> None:
    value_file = tmp_path / "dbpass.txt"
    value_file.write_text(VALUE)
    assert cli.ok("secret", "create", "dbpass", str(value_file), "--label", "app=db",
                  "-l", "tier=back") == "dbpass\n"
    assert cli.ok("secret", "create", "fromstdin", "-", stdin=VALUE) == "fromstdin\n"
    assert cli.ok("config", "create", "webconf", "-", stdin="listen 80;\n") == "webconf\n"

    listed = cli.ok("secret", "ls").splitlines()
    assert listed[0].split() == ["ID", "NAME", "SIZE", "CREATED"]
    rows = [line.split() for line in listed[1:]]
    assert [(r[1], r[2]) for r in rows] == [("dbpass", str(len(VALUE))),
                                            ("fromstdin", str(len(VALUE)))]
    assert cli.ok("secret", "ls", "-q").split() == ["dbpass", "fromstdin"]
    assert cli.ok("config", "ls", "-q").split() == ["webconf"]

    [shown] = json.loads(cli.ok("secret", "inspect", "dbpass"))
    assert shown["metadata"]["labels"] == {"app": "db", "tier": "back"}
    assert shown["spec"] == {"size": len(VALUE), "keyId": sealing.key_id(
        sealing.public_text(sealed_key))}
    assert "Labels:        app=db" in cli.ok("secret", "inspect", "--pretty", "dbpass")
    [config] = json.loads(cli.ok("config", "inspect", "webconf"))
    assert base64.b64decode(config["spec"]["data"]) == b"listen 80;\n"  # configs may show it

    stored = await raw(rstore, "Secret", "dbpass")
    sealed = yaml.safe_load(stored)["spec"]["sealed"]
    assert VALUE.encode() not in stored and VALUE_B64.encode() not in stored
    context = sealing.secret_context("default", "dbpass")
    assert sealing.unseal(sealed_key, sealed, context) == VALUE.encode()
    for args in (("get", "secret", "dbpass", "-o", "yaml"), ("get", "secrets", "-o", "json"),
                 ("describe", "secret", "dbpass"), ("secret", "inspect", "dbpass")):
        out = cli.ok(*args)
        assert sealed not in out and "digest" not in out and str(len(VALUE)) in out

    assert cli.ok("secret", "rm", "dbpass", "fromstdin") == "dbpass\nfromstdin\n"
    assert cli.ok("config", "rm", "webconf") == "webconf\n"
    assert cli.ok("secret", "ls", "-q") == "" and await raw(rstore, "Secret", "dbpass") == b""
    assert_one_error_line(cli("secret", "rm", "dbpass"), "no such secret: dbpass")
    assert_one_error_line(cli("secret", "inspect", "dbpass"), 'secret "dbpass" not found')


def test_get_lists_both_kinds_with_their_columns(cli: Cli) -> None:
    cli.ok("secret", "create", "dbpass", "-", "--label", "app=db", stdin=VALUE)
    cli.ok("config", "create", "webconf", "-", stdin="x")
    assert cli.ok("get", "secrets").split()[:4] == ["NAME", "SIZE", "AGE", "dbpass"]
    assert cli.ok("get", "secrets", "-o", "wide").splitlines()[1].split()[-1] == "app=db"
    assert cli.ok("get", "cm", "-o", "name") == "config/webconf\n"
    assert cli.ok("delete", "secret", "dbpass") == 'secret "dbpass" deleted\n'
    assert cli.ok("delete", "config", "webconf") == 'config "webconf" deleted\n'


async def test_resource_store_reads_and_deletes_them(rstore: ResourceStore) -> None:
    """First-class resources: stored as YAML, read, listed and deleted by ResourceStore."""
    for kind in ("Secret", "Config"):
        await rstore.create({"apiVersion": "kubeless.io/v1", "kind": kind,
                             "metadata": {"name": "one", "namespace": "default"},
                             "spec": {"size": 1, "data": "eA=="} if kind == "Config"
                             else {"size": 1, "sealed": "S", "keyId": "k", "digest": "D"}})
        assert (await raw(rstore, kind, "one")).startswith(b"apiVersion: kubeless.io/v1\n")
        got = await rstore.get(kind, "one", "default")
        assert got is not None and got["metadata"]["resourceVersion"]
        assert [o["metadata"]["name"] for o in (await rstore.list(kind)).items] == ["one"]
        await rstore.delete(kind, "one", "default")
        assert await rstore.get(kind, "one", "default") is None


def test_an_invalid_value_under_a_secrets_key_is_never_shown(
        cli: Cli, etcd_cluster: EtcdCluster, prefix: str) -> None:
    put_raw(etcd_cluster, f"{prefix}/v1/spec/secrets/default/junk",
            f"password: {VALUE}\n".encode())
    res = cli("get", "secrets")
    assert res.returncode == 0 and "<invalid>" in res.stdout
    assert 'warning: secret "junk" is invalid' in res.stderr
    out = cli.ok("describe", "secret", "junk")
    assert "not shown: a secret's key" in out
    assert cli.ok("secret", "rm", "junk") == "junk\n"


# -- apply ---------------------------------------------------------------------------------

def test_apply_round_trip(cli: Cli, tmp_path: Path, etcd_cluster: EtcdCluster) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text(secret_doc() + "---\n" + secret_doc("webconf", "a = 1", kind="Config"))
    assert cli.ok("apply", "-f", str(path)) == "secret/dbpass created\nconfig/webconf created\n"
    assert cli.ok("apply", "-f", str(path)) == \
        "secret/dbpass unchanged\nconfig/webconf unchanged\n"
    assert cli("diff", "-f", str(path)).returncode == 0

    relabelled = secret_doc(labels={"app": "db", "tier": "back"})
    res = cli("diff", "-f", "-", stdin=relabelled)
    assert res.returncode == 1 and "+    tier: back" in res.stdout
    assert cli.ok("apply", "-f", "-", stdin=relabelled) == "secret/dbpass configured\n"
    [shown] = json.loads(cli.ok("secret", "inspect", "dbpass"))
    assert shown["metadata"]["generation"] == 1  # labels alone are no new generation

    before = keyspace(etcd_cluster)
    changed = secret_doc(value="kinds-another-value")
    for args in (("apply", "-f", "-"), ("apply", "--dry-run", "-f", "-")):
        assert_one_error_line(cli(*args, stdin=changed), "its value cannot change",
                              "create dbpass.v2", "--secret-rm dbpass --secret-add "
                              "source=dbpass.v2,target=dbpass", "nothing was written")
    res = cli("diff", "-f", "-", stdin=changed)
    assert res.returncode == 2 and "its value cannot change" in res.stderr
    assert "kinds-another-value" not in res.stderr
    assert cli.ok("apply", "--dry-run", "-f", "-", stdin=secret_doc("new")) == \
        "secret/new created (dry run)\n"
    res = cli("diff", "-f", "-", stdin=secret_doc("new"))
    assert res.returncode == 1 and f"size: {len(VALUE)}" in res.stdout
    assert "sealed" not in res.stdout and "digest" not in res.stdout
    assert written(before, keyspace(etcd_cluster)) == []

    assert cli.ok("delete", "-f", str(path)) == \
        'secret "dbpass" deleted\nconfig "webconf" deleted\n'


# -- removal while in use ----------------------------------------------------------------

def test_removal_is_refused_while_a_service_uses_it(cli: Cli, etcd_cluster: EtcdCluster,
                                                    prefix: str, tmp_path: Path) -> None:
    cli.ok("secret", "create", "dbpass", "-", stdin=VALUE)
    cli.ok("config", "create", "webconf", "-", stdin="x")
    reference(etcd_cluster, prefix, "web", secrets=[{"source": "dbpass", "target": "db"}],
              configs=[{"source": "webconf"}])
    assert cli.ok("service", "create", "-d", "--name", "api", "--secret", "dbpass", "web:1") == "api\n"

    before = keyspace(etcd_cluster)
    assert_one_error_line(cli("secret", "rm", "dbpass"),
                          'secret "dbpass" is in use by services api, web',
                          "--secret-rm dbpass")
    assert_one_error_line(cli("delete", "secret", "dbpass"), "in use by services api, web",
                          "nothing was deleted")
    assert_one_error_line(cli("config", "rm", "webconf"), 'config "webconf" is in use by '
                          "service web")
    assert written(before, keyspace(etcd_cluster)) == []

    # Deleting the services in the same transaction frees them.
    both = tmp_path / "both.yaml"
    services = [{"apiVersion": "kubeless.io/v1", "kind": "Service", "metadata": {"name": n},
                 "spec": {"template": {"image": "web:1"}}} for n in ("web", "api")]
    both.write_text(yaml.safe_dump_all([*services, yaml.safe_load(secret_doc()),
                                        yaml.safe_load(secret_doc("webconf", "x",
                                                                  kind="Config"))]))
    assert cli.ok("delete", "-f", str(both)).count("deleted") == 4


class ServiceWrittenAfterListing(ResourceStore):
    """The test's store, on which another writer puts a Service using the secret right
    after the delete lists the Services (once): a write the delete did not see."""

    def __init__(self, rstore: ResourceStore, service: bytes) -> None:
        super().__init__(rstore.etcd, rstore.keys)
        self.service = service
        self.lists = 0

    async def list(self, kind: str, namespace: str | None = None,
                   selector: Any = None) -> Any:
        result = await super().list(kind, namespace, selector)
        if kind == "Service":
            self.lists += 1
            if self.lists == 1:
                key = self.keys.spec("Service", "late", "default")
                await self.etcd.txn([], [Put(key, self.service)])
        return result


async def test_a_service_that_starts_using_it_meanwhile_wins(
        rstore: ResourceStore, sealed_key: X25519PrivateKey) -> None:
    """The delete lists the Services at R; one written after R that uses the secret fails
    the commit's guard, and the next attempt sees it: refused, nothing deleted."""
    user = validate({"apiVersion": "kubeless.io/v1", "kind": "Secret",
                     "metadata": {"name": "dbpass"}, "stringData": VALUE})
    await create(rstore, user)
    late = yaml.safe_dump({"apiVersion": "kubeless.io/v1", "kind": "Service",
                           "metadata": {"name": "late", "namespace": "default"},
                           "spec": {"template": {"image": "web:1",
                                                 "secrets": [{"source": "dbpass"}]}}})
    racing = ServiceWrittenAfterListing(rstore, late.encode())

    async def read() -> Doomed:
        secret = await racing.get("Secret", "dbpass", "default")
        assert secret is not None
        return Doomed([secret])

    with pytest.raises(InUse, match="in use by service late"):
        await delete_resources(racing, read, what="removing secret dbpass")
    assert racing.lists == 2  # planned again after the guard failed
    assert await rstore.get("Secret", "dbpass", "default") is not None


# -- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "stdin", "needles", "code"), [
    pytest.param(("secret", "create", "s", "/nonexistent/kinds"), None,
                 ("/nonexistent/kinds: no such file or directory",), 1, id="missing-file"),
    pytest.param(("secret", "create", "s", "/tmp"), None, ("/tmp: cannot read it",), 1,
                 id="directory"),
    pytest.param(("secret", "create", "s", "-"), "x" * (MAX_BYTES + 1),
                 (f"more than {MAX_BYTES} bytes (500 KiB",), 1, id="too-big"),
    pytest.param(("config", "create", "c", "-"), "", ("the value is empty",), 1, id="empty"),
    pytest.param(("secret", "create", "Bad_Name", "-"), "x", ("metadata.name",), 1,
                 id="bad-name"),
    pytest.param(("secret", "create", "s", "-", "--label", "=v"), "x", ("--label",), 2,
                 id="bad-label"),
    pytest.param(("secret", "create", "s", "-", "--bogus"), "x", ("--bogus",), 2,
                 id="unknown-flag"),
    pytest.param(("secret", "create", "s"), None, ("FILE",), 2, id="no-file"),
    pytest.param(("secret", "frobnicate"), None, ("frobnicate",), 2, id="unknown-verb"),
    pytest.param(("apply", "-f", "-"),
                 "apiVersion: kubeless.io/v1\nkind: Secret\nmetadata: {name: s}\n"
                 "data: 'kinds-hunter2-s3cret!'\n", ("data: is not valid base64",), 1,
                 id="bad-base64"),
    pytest.param(("apply", "-f", "-"),
                 f"apiVersion: kubeless.io/v1\nkind: Secret\nmetadata: {{name: s}}\n"
                 f"data: {VALUE_B64}\nstringData: {VALUE}\n",
                 ("stringData: give data (base64) or stringData, not both",), 1, id="both"),
    pytest.param(("apply", "-f", "-"),
                 "apiVersion: kubeless.io/v1\nkind: Config\nmetadata: {name: c}\n",
                 ("data: required",), 1, id="neither"),
    pytest.param(("apply", "-f", "-"),
                 "apiVersion: kubeless.io/v1\nkind: Config\nmetadata: {name: c}\n"
                 "stringData: x\nspec: {size: 1, data: eA==}\n",
                 ("spec: is written by kubeless",), 1, id="spec-given"),
])
def test_bad_input(cli: Cli, etcd_cluster: EtcdCluster, args: tuple[str, ...],
                   stdin: str | None, needles: tuple[str, ...], code: int) -> None:
    before = keyspace(etcd_cluster)
    res = cli(*args, stdin=stdin)
    assert_one_error_line(res, *needles)
    assert res.returncode == code
    assert written(before, keyspace(etcd_cluster)) == []


def test_a_cluster_without_a_secrets_key(kubeless: Run, etcd_cluster: EtcdCluster) -> None:
    """A record made before secrets existed: Secrets are refused in one line; Configs,
    which are not sealed, are still stored."""
    before = keyspace(etcd_cluster)
    for args in (("secret", "create", "s", "-"), ("apply", "-f", "-")):
        stdin = VALUE if args[0] == "secret" else secret_doc()
        res = kubeless(*args, stdin=stdin)
        assert_one_error_line(res, "this cluster has no secrets key", "nothing was written")
        assert VALUE not in res.stderr
    assert written(before, keyspace(etcd_cluster)) == []
    assert kubeless("config", "create", "c", "-", stdin="x").returncode == 0
