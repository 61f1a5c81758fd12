"""Refused at apply what can never run: image references, placement constraints and
label selectors, through the CLI against a real etcd.

Each case of ``CASES`` is a class of bad input: argv (a tuple; ``{file}`` stands for a
valid manifest) or the content of a file given to ``apply -f``, and a substring of the
error. Every case must exit non-zero with exactly one line on stderr, starting with
``error:``, no traceback, and write no key of etcd. A Service ``web`` exists
before each case, so update and delete have something to refuse to change.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.cli import Run, names, svc, write
from tests.support.etcd_server import EtcdCluster
from tests.support.unwritten import keyspace, written

pytestmark = pytest.mark.integration

BAD_IMAGE = "Kubeless Demo:LATEST!!"
KNOWN = ("(known: node.id, node.hostname, node.role, node.platform.os, node.platform.arch, "
         "node.labels.<key>)")


def service_doc(name: str = "api", image: str = "web:1", constraints: tuple[str, ...] = (),
                spread: str | None = None, mode: str = "replicated") -> str:
    """A Service manifest; placement only when given."""
    spec: dict[str, object] = {"mode": mode, "template": {"image": image}}
    placement: dict[str, object] = {}
    if constraints:
        placement["constraints"] = list(constraints)
    if spread:
        placement["preferences"] = [{"spread": spread}]
    if placement:
        spec["placement"] = placement
    return yaml.safe_dump({"apiVersion": "kubeless.io/v1", "kind": "Service",
                           "metadata": {"name": name, "labels": {"owner": "git"}},
                           "spec": spec}, sort_keys=False)


WHERE = "bad.yaml:1 (Service default/api): "
CASES: dict[str, tuple[tuple[str, ...] | str, str]] = {
    # image references (Docker's reference grammar)
    "image: the issue's reference in a file": (
        service_doc(image=BAD_IMAGE),
        f'{WHERE}spec.template.image: "{BAD_IMAGE}" is not a valid image reference'),
    "image: uppercase repository in a file": (
        service_doc(image="Web:1"), 'spec.template.image: "Web:1" is not a valid image reference: '
        'repository name "Web" must be lowercase'),
    "image: short digest in a file": (
        service_doc(image="web@sha256:abc"), "at least 32 hex digits"),
    "image: empty tag in a file": (service_doc(image="web:"), "nothing after the last ':'"),
    "image: service create": (
        ("service", "create", "-d", "--name", "api", BAD_IMAGE),
        f'invalid IMAGE: "{BAD_IMAGE}" is not a valid image reference'),
    "image: service update --image": (
        ("service", "update", "-d", "--image", BAD_IMAGE, "web"),
        f'invalid --image: "{BAD_IMAGE}" is not a valid image reference'),
    # placement constraints (Swarm's grammar, kubeless's attributes)
    "constraint: unknown attribute in a file": (
        service_doc(constraints=("node.colour==blue",)),
        f'{WHERE}spec.placement.constraints[0]: unknown attribute "node.colour" {KNOWN}'),
    "constraint: unknown attribute of a global service in a file": (
        service_doc(constraints=("node.role==worker", "node.colour==blue"), mode="global"),
        'spec.placement.constraints[1]: unknown attribute "node.colour"'),
    "constraint: single = in a file": (
        service_doc(constraints=("node.role=manager",)),
        "spec.placement.constraints[0]: expected ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE"),
    "constraint: engine labels in a file": (
        service_doc(constraints=("engine.labels.os==linux",)),
        "kubeless nodes do not report engine labels"),
    "constraint: a role that is neither manager nor worker": (
        service_doc(constraints=("node.role==boss",)), 'node.role is manager or worker, not "boss"'),
    "constraint: an operator inside the value": (
        service_doc(constraints=("node.labels.a==b!=c",)), 'value "b!=c" may only hold'),
    "constraint: service create --constraint": (
        ("service", "create", "-d", "--name", "api", "--constraint", "node.colour==blue", "web:1"),
        f"invalid --constraint 'node.colour==blue': unknown attribute \"node.colour\" {KNOWN}"),
    "constraint: global service create --constraint": (
        ("service", "create", "-d", "--name", "api", "--mode", "global", "--constraint",
         "node.colour==blue", "web:1"), 'unknown attribute "node.colour"'),
    "constraint: service update --constraint-add": (
        ("service", "update", "-d", "--constraint-add", "node.colour==blue", "web"),
        "invalid --constraint-add 'node.colour==blue': unknown attribute"),
    "spread: unknown attribute in a file": (
        service_doc(spread="node.colour"),
        'spec.placement.preferences[0].spread: unknown attribute "node.colour"'),
    "spread: service create --placement-pref": (
        ("service", "create", "-d", "--name", "api", "--placement-pref", "spread=node.colour", "web:1"),
        "invalid --placement-pref 'spread=node.colour': unknown attribute"),
    # label selectors (kubectl's grammar)
    "selector: in without parentheses (get)": (
        ("get", "services", "-l", "app in web"),
        'bad label selector "app in web": expected "(" after in'),
    "selector: unclosed set (get)": (
        ("get", "services", "-l", "app in (web,api"),
        'bad label selector "app in (web,api": expected ")" to close the values of in'),
    "selector: bad value (get)": (
        ("get", "services", "-l", "app=we*b"), '"we*b" is not a valid label value'),
    "selector: an operator kubeless does not know (describe)": (
        ("describe", "services", "-l", "replicas>1"), '"replicas>1" is not a valid label key'),
    "selector: bad selector (delete -l)": (
        ("delete", "services", "-l", "app in web"), 'bad label selector "app in web"'),
    "selector: no requirement (delete -l)": (
        ("delete", "services", "-l", " "), "it has no requirement, so it would select everything"),
    "selector: bad selector (apply --prune -l)": (
        ("apply", "-f", "{file}", "--prune", "-l", "owner in git"),
        'bad label selector "owner in git"'),
    "selector: no requirement (apply --prune -l)": (
        ("apply", "-f", "{file}", "--prune", "-l", ","), 'bad label selector ","'),
}


@pytest.mark.parametrize(("given", "needle"), CASES.values(), ids=CASES.keys())
def test_bad_input_is_refused_and_writes_nothing(kubeless: Run, etcd_cluster: EtcdCluster,
                                                 tmp_path: Path, given: tuple[str, ...] | str,
                                                 needle: str) -> None:
    assert kubeless("apply", "-f", "-", stdin=svc("web", labels="{app: web}")).returncode == 0
    good = write(tmp_path / "good.yaml", service_doc())
    if isinstance(given, str):
        argv: tuple[str, ...] = ("apply", "-f", str(write(tmp_path / "bad.yaml", given)))
    else:
        argv = tuple(str(good) if arg == "{file}" else arg for arg in given)
    before = keyspace(etcd_cluster)
    res = kubeless(*argv)
    assert res.returncode != 0, res.stdout
    assert "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert needle in lines[0], lines[0]
    assert not written(before, keyspace(etcd_cluster)), "a refused command wrote to etcd"


def test_selectors_as_kubectl_reads_them(kubeless: Run, tmp_path: Path) -> None:
    f = write(tmp_path / "s.yaml", svc("a", labels="{app: web, tier: front}"),
              svc("b", labels="{app: api}"), svc("c"))
    assert kubeless("apply", "-f", str(f)).returncode == 0
    expected = {
        "app in (web)": ["service/a"],
        "app in (web,api)": ["service/a", "service/b"],
        "app!=web": ["service/b", "service/c"],
        "app notin (web)": ["service/b", "service/c"],
        "app": ["service/a", "service/b"],
        "!app": ["service/c"],
        "app==web,tier": ["service/a"],
        "app in (web,api),!tier": ["service/b"],
    }
    for selector, wanted in expected.items():
        assert names(kubeless, "-l", selector) == wanted, selector
    res = kubeless("delete", "services", "-l", "app notin (web)")
    assert res.returncode == 0, res.stderr
    assert names(kubeless) == ["service/a"]


def test_valid_grammar_is_applied(kubeless: Run, tmp_path: Path) -> None:
    f = write(tmp_path / "ok.yaml", service_doc(
        "ok", image="registry.local:5000/team/app:1.0-rc_1",
        constraints=("node.role==worker", "node.labels.kubeless.io/rack != r1",
                     "NODE.PLATFORM.OS==linux"), spread="node.labels.zone"))
    res = kubeless("apply", "-f", str(f))
    assert res.returncode == 0, res.stderr
    res = kubeless("service", "create", "-d", "--name", "none", "--constraint", "node.hostname!=x",
                   "none", "sleep", "60")
    assert res.returncode == 0, res.stderr
    assert names(kubeless) == ["service/none", "service/ok"]
