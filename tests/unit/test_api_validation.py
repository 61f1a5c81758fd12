"""validate(): envelope, schema and semantic checks, all violations at once."""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any

import pytest
import yaml

from kubeless.api import (
    InvalidResource,
    UnknownApiVersion,
    UnknownKind,
    Violation,
    validate,
)

ARCHITECTURE_EXAMPLE = """
apiVersion: kubeless.io/v1
kind: Service
metadata:
  name: web
  namespace: default
  labels: {app: web}
spec:
  mode: replicated
  replicas: 3
  template:
    image: web:1
    command: ["httpd"]
    args: ["-f", "-p", "80", "-h", "/www"]
    env: {GREETING: hello}
    workdir: /www
    user: "1000"
    mounts:
      - {type: bind, source: /etc/hostname, target: /www/index.html, readOnly: true}
      - {type: volume, source: data, target: /data}
      - {type: tmpfs, target: /tmp}
    resources:
      reservations: {cpus: 0.25, memory: 64Mi}
      limits: {cpus: 1, memory: 256Mi}
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]
      interval: 5s
      timeout: 2s
      retries: 3
      startPeriod: 0s
    restartPolicy: {condition: any, delay: 5s, maxAttempts: 0, window: 0s}
    stopGracePeriod: 10s
  placement:
    constraints: ["node.labels.zone==eu", "node.role!=manager"]
    preferences: [{spread: node.labels.zone}]
    maxReplicasPerNode: 0
  ports:
    - {name: http, target: 80, published: 8080, protocol: tcp, mode: ingress}
  update:   {parallelism: 1, delay: 0s, failureAction: pause, monitor: 5s, maxFailureRatio: 0, order: stop-first}
  rollback: {parallelism: 1, delay: 0s, failureAction: pause, monitor: 5s, maxFailureRatio: 0, order: stop-first}
"""


def minimal_service(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubeless.io/v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"template": {"image": "web:1"}, **spec},
    }


def violations_of(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidResource) as caught:
        validate(doc)
    return [str(v) for v in caught.value.violations]


def test_architecture_example_validates_and_keeps_its_values() -> None:
    doc = yaml.safe_load(ARCHITECTURE_EXAMPLE)
    before = copy.deepcopy(doc)
    out = validate(doc)
    assert doc == before, "the input is untouched"
    assert out["spec"]["replicas"] == 3
    assert out["spec"]["template"]["mounts"][2] == {"type": "tmpfs", "target": "/tmp", "readOnly": False}
    assert out["spec"]["template"]["healthcheck"]["interval"] == "5s"
    assert out["spec"]["ports"] == before["spec"]["ports"]
    assert {k: v for k, v in out["spec"].items() if k in before["spec"]} == before["spec"] | {
        "template": out["spec"]["template"]}
    assert out["spec"]["taskHistoryLimit"] == 5


def test_defaults_filled_in_minimal_service() -> None:
    out = validate(minimal_service())
    spec = out["spec"]
    assert out["metadata"]["namespace"] == "default"
    assert (spec["mode"], spec["replicas"], spec["taskHistoryLimit"], spec["forceUpdate"]) == (
        "replicated", 1, 5, 0)
    swarm_update = {"parallelism": 1, "delay": "0s", "failureAction": "pause", "monitor": "5s",
                    "maxFailureRatio": 0, "order": "stop-first"}
    assert spec["update"] == swarm_update
    assert spec["rollback"] == swarm_update
    assert spec["template"]["restartPolicy"] == {
        "condition": "any", "delay": "5s", "maxAttempts": 0, "window": "0s"}
    assert spec["template"]["stopGracePeriod"] == "10s"
    assert spec["placement"] == {"maxReplicasPerNode": 0}
    assert "healthcheck" not in spec["template"], "absent optional objects stay absent"
    assert "ports" not in spec and "resources" not in spec["template"]


@pytest.mark.parametrize(
    ("spec", "path", "value"),
    [
        pytest.param({"ports": [{"target": 80}]}, ("ports", 0, "protocol"), "tcp", id="port-protocol"),
        pytest.param({"ports": [{"target": 80}]}, ("ports", 0, "mode"), "ingress", id="port-mode"),
        pytest.param({"update": {"parallelism": 2}}, ("update", "monitor"), "5s", id="partial-update"),
        pytest.param({"update": {"parallelism": 2}}, ("update", "parallelism"), 2, id="user-value-kept"),
    ],
)
def test_defaults_inside_present_values(spec: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    found: Any = validate(minimal_service(**spec))["spec"]
    for step in path:
        found = found[step]
    assert found == value


def test_healthcheck_defaults_when_present() -> None:
    doc = minimal_service()
    doc["spec"]["template"]["healthcheck"] = {"test": ["CMD", "true"]}
    check = validate(doc)["spec"]["template"]["healthcheck"]
    assert check == {"test": ["CMD", "true"], "interval": "30s", "timeout": "30s",
                     "retries": 3, "startPeriod": "0s"}


def test_node_defaults() -> None:
    out = validate({"apiVersion": "kubeless.io/v1", "kind": "Node", "metadata": {"name": "node-1"}})
    assert out["spec"] == {"role": "worker", "availability": "active"}
    assert "namespace" not in out["metadata"]


def test_task_validates() -> None:
    task = {
        "apiVersion": "kubeless.io/v1", "kind": "Task",
        "metadata": {"name": "a" * 25, "namespace": "prod", "labels": {"kubeless.io/service": "web"}},
        "spec": {"serviceName": "web", "slot": 1, "specVersion": 1, "template": {"image": "web:1"}},
        "status": {"state": "running", "containerId": "abc"},
    }
    out = validate(task)
    assert out["spec"]["desiredState"] == "running"
    assert out["spec"]["template"]["stopGracePeriod"] == "10s"


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param(minimal_service(replicas=-1), ["spec.replicas: -1 is less than the minimum of 0"],
                     id="negative-replicas"),
        pytest.param(minimal_service(mode="global-ish"),
                     ["spec.mode: 'global-ish' is not one of ['replicated', 'global', 'replicated-job', 'global-job']"], id="bad-enum"),
        pytest.param(minimal_service(replica=2), ['spec.replica: unknown field (did you mean "replicas"?)'],
                     id="typo"),
        pytest.param({**minimal_service(), "spec": {"replicas": 1}}, ["spec.template: required"],
                     id="missing-template"),
        pytest.param({**minimal_service(), "spec": {"template": {}}}, ["spec.template.image: required"],
                     id="missing-image"),
        pytest.param(minimal_service(update={"monitor": "5"}),
                     ["spec.update.monitor: '5' is not a duration like 10s, 1m30s, 500ms"], id="bad-duration"),
        pytest.param(minimal_service(update={"delay": 5}),
                     ["spec.update.delay: 5 is not of type 'string'"], id="duration-as-int"),
        pytest.param(minimal_service(ports=[{"target": 70000}]),
                     ["spec.ports[0].target: 70000 is greater than the maximum of 65535"], id="port-range"),
        pytest.param(minimal_service(placement={"constraints": ["node.role=manager"]}),
                     ["spec.placement.constraints[0]: expected ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE, "
                      "e.g. node.labels.zone==eu"], id="bad-constraint"),
        pytest.param(minimal_service(placement={"constraints": ["node.role==manager",
                                                                "node.colour==blue"]}),
                     ['spec.placement.constraints[1]: unknown attribute "node.colour" (known: node.id, '
                      "node.hostname, node.role, node.platform.os, node.platform.arch, "
                      "node.labels.<key>)"], id="unknown-constraint-attribute"),
        pytest.param(minimal_service(placement={"constraints": [7]}),
                     ["spec.placement.constraints[0]: 7 is not of type 'string'"],
                     id="constraint-not-a-string"),
        pytest.param(minimal_service(placement={"preferences": [{"spread": "node.colour"}]}),
                     ['spec.placement.preferences[0].spread: unknown attribute "node.colour" (known: '
                      "node.id, node.hostname, node.role, node.platform.os, node.platform.arch, "
                      "node.labels.<key>)"], id="unknown-spread-attribute"),
        pytest.param({**minimal_service(), "spec": {"template": {"image": "Kubeless Demo:LATEST!!"}}},
                     ['spec.template.image: "Kubeless Demo:LATEST!!" is not a valid image reference: '
                      'repository name "Kubeless Demo" may only hold lowercase letters, digits, and '
                      "'.', '_', '__' or '-' between them, with '/' between components"],
                     id="bad-image"),
        pytest.param({**minimal_service(), "spec": {"template": {"image": 5}}},
                     ["spec.template.image: 5 is not of type 'string'"], id="image-not-a-string"),
        pytest.param({**minimal_service(), "extra": 1}, ["extra: unknown field"], id="unknown-top-level"),
        pytest.param({**minimal_service(), "metadata": {}}, ["metadata.name: required"], id="no-name"),
        pytest.param({**minimal_service(), "metadata": "web"}, ["metadata: must be a mapping"],
                     id="metadata-not-mapping"),
        pytest.param({**minimal_service(), "metadata": {"name": "web", "labels": {"app": 1}}},
                     ["metadata.labels.app: a label value must be a string, not int (quote it)"],
                     id="label-value-int"),
        pytest.param({**minimal_service(), "metadata": {"name": "web", "annotations": {"a b": "x"}}},
                     ['metadata.annotations["a b"]: "a b" is not a valid label key: use letters, digits, '
                      "'-', '_' and '.', starting and ending with a letter or digit, at most 63 characters "
                      '(after an optional "prefix/")'], id="annotation-key"),
        pytest.param(minimal_service(ports=[{"target": 80, "published": 8080},
                                            {"target": 81, "published": 8080, "mode": "host"}]),
                     ["spec.ports[1].published: 8080/tcp is already published by spec.ports[0]"],
                     id="port-published-twice"),
        pytest.param({**minimal_service(), "metadata": {"name": "web", "namespace": "Prod"}},
                     ['metadata.namespace: "Prod" is not a valid namespace: use lowercase letters, digits and '
                      "'-', starting and ending with a letter or digit, at most 63 characters"], id="namespace"),
    ],
)
def test_single_violation(doc: dict[str, Any], expected: list[str]) -> None:
    assert violations_of(doc) == expected


def test_memory_accepts_sizes_and_ints() -> None:
    doc = minimal_service()
    doc["spec"]["template"]["resources"] = {"limits": {"memory": 1024, "cpus": 0.5},
                                           "reservations": {"memory": "1.5Gi"}}
    validate(doc)
    doc["spec"]["template"]["resources"] = {"limits": {"memory": "64mb"}}
    assert violations_of(doc) == [
        "spec.template.resources.limits.memory: '64mb' is not a size like 64Mi, 1Gi, 512M, 100k "
        "or a number of bytes"]


def test_mount_source_rules() -> None:
    doc = minimal_service()
    doc["spec"]["template"]["mounts"] = [{"type": "bind", "target": "/a"},
                                         {"type": "tmpfs", "source": "x", "target": "/b"}]
    assert violations_of(doc) == ["spec.template.mounts[0].source: required for a bind mount",
                                  "spec.template.mounts[1].source: a tmpfs mount has no source"]


def test_every_violation_reported_at_once() -> None:
    doc = minimal_service(replicas=-1, mode="x", ports=[{"target": 0, "protocol": "sctp"}])
    doc["metadata"] = {"name": "Web_1", "lables": {}}
    doc["spec"]["template"]["mounts"] = [{"type": "nfs", "target": "/d"}]
    found = violations_of(doc)
    paths = [line.split(":")[0] for line in found]
    assert paths == [
        "metadata.lables", "metadata.name", "spec.mode", "spec.replicas",
        "spec.template.mounts[0].type", "spec.ports[0].target", "spec.ports[0].protocol",
    ]


def test_invalid_resource_str() -> None:
    doc = minimal_service(replicas=-1, mode="x")
    doc["metadata"]["name"] = "Web_1"
    with pytest.raises(InvalidResource) as caught:
        validate(doc)
    error = caught.value
    error.source = "web.yaml document 2"
    lines = str(error).splitlines()
    assert lines[0] == "web.yaml document 2 (Service default/Web_1): 3 errors"
    assert len(lines) == 4
    assert lines[3].strip() == "spec.replicas: -1 is less than the minimum of 0"


def test_one_violation_is_one_line() -> None:
    with pytest.raises(InvalidResource) as caught:
        validate(minimal_service(replicas=-1))
    caught.value.source = "web.yaml:1"
    assert str(caught.value) == ("web.yaml:1 (Service default/web): spec.replicas: -1 is less than "
                                 "the minimum of 0")


def test_violation_str() -> None:
    assert str(Violation("spec.replicas", "-1 is less than the minimum of 0")) == (
        "spec.replicas: -1 is less than the minimum of 0")


def test_namespace_on_a_node_is_refused() -> None:
    doc = {"apiVersion": "kubeless.io/v1", "kind": "Node", "metadata": {"name": "n1", "namespace": "default"}}
    assert violations_of(doc) == ["metadata.namespace: Node is cluster-scoped"]


@pytest.mark.parametrize(
    ("kind", "hint"),
    [
        pytest.param("Servce", "(did you mean Service?)", id="typo"),
        pytest.param("service", "(did you mean Service?)", id="case"),
        pytest.param("Deployment", "", id="other"),
        pytest.param(None, "", id="missing"),
    ],
)
def test_unknown_kind_lists_known_kinds(kind: str | None, hint: str) -> None:
    doc = {**minimal_service(), "kind": kind}
    with pytest.raises(UnknownKind) as caught:
        validate(doc)
    message = str(caught.value)
    assert "known kinds are Config, Node, Route, Secret, Service, Task" in message
    assert message.endswith(hint)


@pytest.mark.parametrize("api_version", ["apps/v1", "kubeless.io/v2", None])
def test_unknown_api_version(api_version: str | None) -> None:
    with pytest.raises(UnknownApiVersion) as caught:
        validate({**minimal_service(), "apiVersion": api_version})
    assert "use apiVersion: kubeless.io/v1" in str(caught.value)


def test_not_a_mapping() -> None:
    with pytest.raises(InvalidResource):
        validate(["not", "a", "mapping"])


def test_importing_the_package_does_not_import_jsonschema() -> None:
    code = "import sys, kubeless.api; kubeless.api.load_kinds(); print('jsonschema' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
