"""Bad input, class by class: refused with one line, the right exit code, nothing written.

``CASES`` names each class of mistake a user makes through the command line
(flags and arguments), through files given to ``apply -f`` and through the
environment. Every case runs the CLI's entry point in this process (the
start-up of a subprocess per case would make this suite slow; test_cli.py
runs the CLI as a subprocess) against a real etcd whose prefix holds one
live Service, ``web``, and asserts the CLI's contract for bad input (README, "Bad input"):

- the exit code: 2 when the command line or a ``KUBELESS_*`` variable cannot
  be read (an unknown flag, a missing argument, a flag value that is not
  valid), 1 for everything else (a file's content, a resource not found);
- stderr is exactly one line, starting ``error: ``, naming the file, line,
  document and field (or the flag) where there is one; stdout is empty;
- no traceback;
- nothing written: no key of etcd is new, rewritten or removed (tests/support/unwritten.py).

Image references, constraints and label selectors have their own suite
(test_bad_input_grammar.py), and so do bad values found in etcd
(test_bad_data.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeless import store
from kubeless.api import validate
from tests.support.etcd_server import EtcdCluster
from tests.support.unwritten import keyspace, written

pytestmark = pytest.mark.integration

USAGE, ERROR = 2, 1
NAME_RULE = "use lowercase letters, digits and '-'"


def svc(name: str = "web", **changes: Any) -> str:
    """A valid Service document, with ``changes`` set at dotted paths
    (``{"spec.replicas": -1}``; a value of ``...`` removes the field)."""
    doc: dict[str, Any] = {"apiVersion": "kubeless.io/v1", "kind": "Service",
                           "metadata": {"name": name},
                           "spec": {"replicas": 1, "template": {"image": "web:1"}}}
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = doc
        for key in parents:
            node = node.setdefault(key, {})
        if value is ...:
            del node[leaf]
        else:
            node[leaf] = value
    return yaml.safe_dump(doc, sort_keys=False)


def spec(path: str, value: Any) -> dict[str, str]:
    """One file, bad.yaml, holding a Service with one field changed."""
    return {"bad.yaml": svc("api", **{path: value})}


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]  # after `kubeless`; "{dir}" is the folder the files are written in
    says: tuple[str, ...]  # pieces the one error line must hold ("{dir}" as in args)
    code: int = ERROR
    files: dict[str, str] = field(default_factory=dict)  # relative path -> content
    env: dict[str, str] = field(default_factory=dict)
    stdin: str | None = None


def apply_bad(*says: str, **kw: Any) -> Case:
    """`apply -f bad.yaml` of a file holding a Service with one bad field."""
    return Case(("apply", "-f", "{dir}/bad.yaml"), ("{dir}/bad.yaml:1 (Service default/api): ",
                                                     *says, "; nothing was written"), **kw)


CREATE = ("service", "create", "-d", "--name", "api")

CASES: dict[str, Case] = {
    # --- files given to apply -f -------------------------------------------------------
    "yaml syntax error": Case(
        ("apply", "-f", "{dir}/bad.yaml"),
        ("{dir}/bad.yaml:4:1: could not parse YAML: did not find expected ',' or '}'",),
        files={"bad.yaml": "apiVersion: kubeless.io/v1\nkind: Service\nmetadata: {name: api\n"}),
    "yaml tab indentation": Case(
        ("apply", "-f", "{dir}/bad.yaml"),
        ("{dir}/bad.yaml:1:1: could not parse YAML: found character that cannot start any token",),
        files={"bad.yaml": "\tkind: Service\n"}),
    "yaml on stdin": Case(("apply", "-f", "-"), ("<stdin>:2:1: could not parse YAML",),
                          stdin="a: [1, 2\n"),
    "not utf-8": Case(("apply", "-f", "{dir}/bad.yaml"), ("{dir}/bad.yaml: cannot read", "utf-8"),
                      files={"bad.yaml": "\udcff\udcfe"}),
    "one bad document of several": Case(
        ("apply", "-f", "{dir}/bad.yaml"),
        ("{dir}/bad.yaml:10 (Service default/b): spec.replicas: -1 is less than the minimum of 0",),
        files={"bad.yaml": svc("a") + "---\n" + svc("b", **{"spec.replicas": -1})}),
    "unknown apiVersion": Case(
        ("apply", "-f", "{dir}/bad.yaml"),
        ('{dir}/bad.yaml:1: unknown apiVersion "kubeless.io/v2": use apiVersion: kubeless.io/v1',),
        files={"bad.yaml": svc("api", apiVersion="kubeless.io/v2")}),
    "unknown kind": Case(
        ("apply", "-f", "{dir}/bad.yaml"),
        ('{dir}/bad.yaml:1: unknown kind "Servise": known kinds are Config, Node, Route, Secret, Service, Task '
         "(did you mean Service?)",),
        files={"bad.yaml": svc("api", kind="Servise")}),
    "not a mapping": Case(("apply", "-f", "{dir}/bad.yaml"),
                          ("{dir}/bad.yaml:1: a resource must be a mapping, not a list",),
                          files={"bad.yaml": "- kind: Service\n"}),
    "empty file": Case(("apply", "-f", "{dir}/bad.yaml"), ("no resources found in {dir}/bad.yaml",),
                       files={"bad.yaml": ""}),
    "missing file": Case(("apply", "-f", "{dir}/none.yaml"),
                         ("{dir}/none.yaml: no such file or directory",)),
    "document over 1 MiB": Case(
        ("apply", "-f", "{dir}/bad.yaml"),
        ("{dir}/bad.yaml:1: document is", "the limit is 1048576 bytes (1 MiB)"),
        files={"bad.yaml": svc("api", **{"metadata.annotations": {"blob": "x" * (1 << 20)}})}),
    "bad file among good ones": Case(
        ("apply", "-f", "{dir}/folder"),
        ("{dir}/folder/b.yaml:1 (Service default/b): spec.replicas: -1 is less than",),
        files={"folder/a.yaml": svc("a"), "folder/b.yaml": svc("b", **{"spec.replicas": -1}),
               "folder/c.yaml": svc("c")}),
    "declared twice": Case(
        ("apply", "-f", "{dir}/bad.yaml"),
        ("{dir}/bad.yaml:10: Service default/api is also declared at {dir}/bad.yaml:1",),
        files={"bad.yaml": svc("api") + "---\n" + svc("api")}),
    "negative replicas": apply_bad("spec.replicas: -1 is less than the minimum of 0",
                                   files=spec("spec.replicas", -1)),
    "replicas not an integer": apply_bad("spec.replicas: '3' is not of type 'integer'",
                                         files=spec("spec.replicas", "3")),
    "unknown field": apply_bad('spec.replcas: unknown field (did you mean "replicas"?)',
                               files=spec("spec.replcas", 2)),
    "no image in the template": apply_bad("spec.template.image: required",
                               files=spec("spec.template.image", ...)),
    "bad duration": apply_bad("spec.template.stopGracePeriod: '10 seconds' is not a duration",
                              files=spec("spec.template.stopGracePeriod", "10 seconds")),
    "bad size": apply_bad("spec.template.resources.limits.memory: '10XB' is not a size",
                          files=spec("spec.template.resources", {"limits": {"memory": "10XB"}})),
    "port out of range": apply_bad("spec.ports[0].published: 99999 is greater than the maximum",
                                   files=spec("spec.ports", [{"target": 80, "published": 99999}])),
    "bad port protocol": apply_bad("spec.ports[0].protocol: 'sctp' is not one of ['tcp', 'udp']",
                                   files=spec("spec.ports", [{"target": 80, "protocol": "sctp"}])),
    "bad port mode": apply_bad("spec.ports[0].mode: 'bridge' is not one of ['ingress', 'host']",
                               files=spec("spec.ports", [{"target": 80, "mode": "bridge"}])),
    "port published twice": apply_bad(
        "spec.ports[1].published: 8080/tcp is already published by spec.ports[0]",
        files=spec("spec.ports", [{"target": 80, "published": 8080},
                                  {"target": 81, "published": 8080}])),
    "mount without target": apply_bad("spec.template.mounts[0].target: required",
                                      files=spec("spec.template.mounts",
                                                 [{"type": "volume", "source": "data"}])),
    "mount with a relative target": apply_bad(
        "spec.template.mounts[0].target: 'data' does not match '^/'",
        files=spec("spec.template.mounts", [{"type": "bind", "source": "/srv", "target": "data"}])),
    "bad restart condition": apply_bad(
        "spec.template.restartPolicy.condition: 'sometimes' is not one of",
        files=spec("spec.template.restartPolicy", {"condition": "sometimes"})),
    "bad update order": apply_bad("spec.update.order: 'random' is not one of",
                                  files=spec("spec.update", {"order": "random"})),
    "bad update failureAction": apply_bad("spec.update.failureAction: 'explode' is not one of",
                                          files=spec("spec.update", {"failureAction": "explode"})),
    "rollback cannot roll back": apply_bad(
        "spec.rollback.failureAction: 'rollback' is not one of ['pause', 'continue']",
        files=spec("spec.rollback", {"failureAction": "rollback"})),
    "maxFailureRatio over 1": apply_bad("spec.update.maxFailureRatio: 1.5 is greater than the maximum of 1",
                                        files=spec("spec.update", {"maxFailureRatio": 1.5})),
    "label value not a string": apply_bad("metadata.labels.tier: a label value must be a string",
                                          files=spec("metadata.labels", {"tier": 3})),
    "name in uppercase": Case(("apply", "-f", "{dir}/bad.yaml"),
                              ('metadata.name: "Web" is not a valid name', NAME_RULE),
                              files={"bad.yaml": svc("Web")}),
    "name too long": Case(("apply", "-f", "{dir}/bad.yaml"),
                          (f'metadata.name: "{"a" * 64}" is not a valid name', "at most 63"),
                          files={"bad.yaml": svc("a" * 64)}),
    "name with an underscore": Case(("apply", "-f", "{dir}/bad.yaml"),
                                    ('metadata.name: "web_2" is not a valid name',),
                                    files={"bad.yaml": svc("web_2")}),
    "namespace not a DNS label": Case(
        ("apply", "-f", "{dir}/bad.yaml"),
        ("{dir}/bad.yaml:1 (Service Prod/api): metadata.namespace: "
         '"Prod" is not a valid namespace',),
        files={"bad.yaml": svc("api", **{"metadata.namespace": "Prod"})}),
    # --- flags and arguments ---------------------------------------------------------
    "--replicas not a number": Case((*CREATE, "--replicas", "abc", "web:1"),
                                    ("invalid --replicas 'abc': must be a whole number",), USAGE),
    "--replicas negative": Case((*CREATE, "--replicas", "-1", "web:1"),
                                ("invalid --replicas '-1': must be 0 or more",), USAGE),
    "--publish out of range": Case((*CREATE, "--publish", "99999:80", "web:1"),
                                   ("invalid --publish '99999:80': port '99999' must be between 1 "
                                    "and 65535",), USAGE),
    "--publish not a port": Case((*CREATE, "--publish", "abc", "web:1"),
                                 ("invalid --publish 'abc': expected [PUBLISHED:]TARGET",), USAGE),
    "--publish twice": Case((*CREATE, "-p", "80:80", "-p", "80:81", "web:1"),
                            ("invalid --publish: published port 80/tcp is already used",), USAGE),
    "--env without =": Case((*CREATE, "--env", "DEBUG", "web:1"),
                            ("invalid --env 'DEBUG': expected KEY=VALUE",), USAGE),
    "--mount not key=value": Case((*CREATE, "--mount", "garbage", "web:1"),
                                  ("invalid --mount 'garbage': expected key=value",), USAGE),
    "--mount relative target": Case(
        (*CREATE, "--mount", "type=bind,source=/srv,target=data", "web:1"),
        ("invalid --mount 'type=bind,source=/srv,target=data': target= must be an absolute path",),
        USAGE),
    "--update-parallelism negative": Case(
        (*CREATE, "--update-parallelism", "-1", "web:1"),
        ("invalid --update-parallelism '-1': must be 0 or more",), USAGE),
    "--limit-memory bad size": Case((*CREATE, "--limit-memory", "10XB", "web:1"),
                                    ("invalid --limit-memory '10XB': must be a size",), USAGE),
    "--restart-condition unknown": Case(
        (*CREATE, "--restart-condition", "sometimes", "web:1"),
        ("invalid --restart-condition 'sometimes': must be one of any, on-failure, none",), USAGE),
    "--restart-delay without a unit": Case((*CREATE, "--restart-delay", "5", "web:1"),
                                           ("invalid --restart-delay '5': use a unit",), USAGE),
    "unknown flag": Case((*CREATE, "--frobnicate", "web:1"),
                         ("No such option '--frobnicate'.",
                          "See 'kubeless service create --help'."), USAGE),
    "create without an image": Case(CREATE, ("Missing argument 'IMAGE'.",), USAGE),
    "boolean flag not a boolean": Case((*CREATE, "--detach=maybe", "web:1"),
                                       ("Option '--detach' takes true or false, not 'maybe'.",),
                                       USAGE),
    "-n not a namespace": Case((*CREATE, "-n", "Bad_NS", "web:1"),
                               ('invalid -n: "Bad_NS" is not a valid namespace',), USAGE),
    "scale to a word": Case(("service", "scale", "-d", "web=abc"),
                            ("invalid scale 'web=abc': use SERVICE=REPLICAS",), USAGE),
    "scale of a missing service": Case(("service", "scale", "-d", "nope=3"),
                                       ('service "nope" not found in namespace default',)),
    "top of an unknown kind": Case(("top", "pods"),
                                   ("kubeless top pods: expected tasks, services or nodes",),
                                   USAGE),
    "top sorted by a word": Case(("top", "tasks", "--sort-by", "name"),
                                 ("Invalid value for '--sort-by': 'name' is not one of 'cpu', "
                                  "'memory'.",), USAGE),
    "update of a missing service": Case(("service", "update", "-d", "--image", "web:2", "nope"),
                                        ('service "nope" not found in namespace default',)),
    "node availability unknown": Case(
        ("node", "update", "--availability", "sleepy", "n1"),
        ("Invalid value for '--availability': 'sleepy' is not one of 'active', 'pause', "
         "'drain'.",), USAGE),
    "apply --prune without -l": Case(("apply", "-f", "{dir}/good.yaml", "--prune"),
                                     ("--prune needs a label selector",), USAGE,
                                     files={"good.yaml": svc("api")}),
    "apply -n not a namespace": Case(("apply", "-n", "Prod", "-f", "{dir}/good.yaml"),
                                     ('invalid -n: "Prod" is not a valid namespace',), USAGE,
                                     files={"good.yaml": svc("api")}),
    "get -o unknown": Case(("get", "svc", "-o", "xml"),
                           ("Invalid value for '-o' / '--output': 'xml' is not one of",), USAGE),
    "unknown command": Case(("frobnicate",), ("No such command 'frobnicate'.",), USAGE),
    "--endpoints malformed": Case(("--endpoints", "http://[::1", "get", "svc"),
                                  ("etcd endpoint 'http://[::1': Invalid IPv6 URL",), USAGE),
    "--endpoints bad port": Case(("--endpoints", "127.0.0.1:port", "get", "svc"),
                                 ("etcd endpoint '127.0.0.1:port'",), USAGE),
    "--timeout negative": Case(("--timeout", "-1", "get", "svc"),
                               ("Invalid value for '--timeout': '-1' is not a number of seconds "
                                "greater than 0",), USAGE),
    "--timeout not a number": Case(("--timeout", "nan", "get", "svc"),
                                   ("Invalid value for '--timeout': 'nan'",), USAGE),
    # --- environment -----------------------------------------------------------------
    "KUBELESS_ENDPOINTS malformed": Case(("get", "svc"), ("etcd endpoint 'ftp://x': scheme must be "
                                                          "http or https",), USAGE,
                                         env={"KUBELESS_ENDPOINTS": "ftp://x"}),
    "KUBELESS_NAMESPACE not a namespace": Case(
        ("get", "svc"), ('invalid KUBELESS_NAMESPACE: "Prod" is not a valid namespace',), USAGE,
        env={"KUBELESS_NAMESPACE": "Prod"}),
}


def write_files(root: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8", "surrogateescape"))


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run_cli(case: Case, root: Path, cluster: EtcdCluster, prefix: str,
            monkeypatch: pytest.MonkeyPatch) -> Ran:
    """``kubeless ARGS`` run in this process, through the real entry point (``main``, where
    every error is formatted and the exit code chosen): 65 subprocesses would cost half a
    second of start-up each. An exception escaping ``main`` fails the test with it."""
    from kubeless_cli.main import main

    env = {**cluster.client_env(), "KUBELESS_PREFIX": prefix, **case.env}
    monkeypatch.delenv("KUBELESS_NAMESPACE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", ["kubeless", *(a.replace("{dir}", str(root))
                                                     for a in case.args)])
    monkeypatch.setattr(sys, "stdin", io.StringIO(case.stdin or ""))
    out, err = io.StringIO(), io.StringIO()
    code: object = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code
    assert isinstance(code, int), code
    return Ran(code, out.getvalue(), err.getvalue())


async def _seed(cluster: EtcdCluster, prefix: str) -> None:
    rstore = cluster.connect(prefix)
    try:
        await rstore.etcd.txn([], [store.Put(rstore.keys.cluster(), b"{}")])  # a cluster is here
        await rstore.create(validate(yaml.safe_load(svc("web"))))
    finally:
        await rstore.etcd.close()


def test_enough_classes() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_writes_nothing(
        name: str, etcd_cluster: EtcdCluster, prefix: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[name]
    asyncio.run(_seed(etcd_cluster, prefix))
    before = keyspace(etcd_cluster)
    write_files(tmp_path, case.files)

    res = run_cli(case, tmp_path, etcd_cluster, prefix, monkeypatch)

    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    assert res.returncode == case.code, res.stderr
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1 \
        and res.stderr.endswith("\n"), res.stderr
    for piece in case.says:
        assert piece.replace("{dir}", str(tmp_path)) in res.stderr, res.stderr
    assert res.stdout == ""
    assert not written(before, keyspace(etcd_cluster)), "nothing may be written"
