"""Table tests for kubeless_cli.service_flags: every flag, every bad input,
and the properties of update (keeps what it is not told to change, never
mutates its input, agrees with create)."""

from __future__ import annotations

import copy
import dataclasses
import random
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeless_cli.service_flags import (
    API_VERSION,
    UPDATE_ONLY,
    FlagError,
    ServiceFlags,
    build_service,
    flag_name,
    random_name,
    update_service,
)


def spec_of(**kw: Any) -> dict[str, Any]:
    spec: dict[str, Any] = build_service(ServiceFlags(name="web", image="web:1", **kw))["spec"]
    return spec


def tpl(**kw: Any) -> dict[str, Any]:
    return {"image": "web:1", **kw}


# --- create: one case per flag ----------------------------------------------

GOOD: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("image only", {}, {"template": tpl()}),
    ("secret and config", {"secret": ("dbpass",), "config": ("src=webconf,dst=/etc/web.conf",)},
     {"template": tpl(secrets=[{"source": "dbpass"}],
                      configs=[{"source": "webconf", "target": "/etc/web.conf"}])}),
    ("command alone", {"command": ("httpd",)}, {"template": tpl(args=["httpd"])}),
    ("command with args", {"command": ("httpd", "-f", "-p", "80")},
     {"template": tpl(args=["httpd", "-f", "-p", "80"])}),
    ("entrypoint", {"entrypoint": "/bin/sh -c"}, {"template": tpl(command=["/bin/sh", "-c"])}),
    ("replicas str", {"replicas": "3"}, {"template": tpl(), "replicas": 3}),
    ("replicas int zero", {"replicas": 0}, {"template": tpl(), "replicas": 0}),
    ("mode global", {"mode": "global"}, {"template": tpl(), "mode": "global"}),
    ("mode replicated", {"mode": "replicated", "replicas": 2},
     {"template": tpl(), "mode": "replicated", "replicas": 2}),
    ("publish short", {"publish": ("8080:80",)},
     {"template": tpl(), "ports": [{"target": 80, "published": 8080}]}),
    ("publish short udp", {"publish": ("53:53/udp",)},
     {"template": tpl(), "ports": [{"target": 53, "published": 53, "protocol": "udp"}]}),
    ("publish target only", {"publish": ("80",)},
     {"template": tpl(), "ports": [{"target": 80}]}),
    ("publish long", {"publish": ("published=8080,target=80,protocol=udp,mode=host",)},
     {"template": tpl(), "ports": [{"target": 80, "published": 8080,
                                    "protocol": "udp", "mode": "host"}]}),
    ("publish long target only", {"publish": ("target=80",)},
     {"template": tpl(), "ports": [{"target": 80}]}),
    ("publish twice", {"publish": ("8080:80", "8443:443")},
     {"template": tpl(), "ports": [{"target": 80, "published": 8080},
                                   {"target": 443, "published": 8443}]}),
    ("publish duplicate kept once", {"publish": ("8080:80", "published=8080,target=80")},
     {"template": tpl(), "ports": [{"target": 80, "published": 8080}]}),
    ("mount bind ro", {"mount": ("type=bind,source=/a,target=/b,readonly",)},
     {"template": tpl(mounts=[{"type": "bind", "source": "/a", "target": "/b",
                               "readOnly": True}])}),
    ("mount aliases", {"mount": ("type=bind,src=/a,dst=/b,ro=true",)},
     {"template": tpl(mounts=[{"type": "bind", "source": "/a", "target": "/b",
                               "readOnly": True}])}),
    ("mount destination readonly=false", {"mount": ("src=data,destination=/d,readonly=false",)},
     {"template": tpl(mounts=[{"type": "volume", "source": "data", "target": "/d",
                               "readOnly": False}])}),
    ("mount default volume", {"mount": ("source=data,target=/data",)},
     {"template": tpl(mounts=[{"type": "volume", "source": "data", "target": "/data",
                               "readOnly": False}])}),
    ("mount anonymous volume ro", {"mount": ("target=/cache,ro",)},
     {"template": tpl(mounts=[{"type": "volume", "target": "/cache", "readOnly": True}])}),
    ("mount tmpfs", {"mount": ("type=tmpfs,target=/tmp",)},
     {"template": tpl(mounts=[{"type": "tmpfs", "target": "/tmp", "readOnly": False}])}),
    ("env", {"env": ("A=1", "B=x=y", "C=")},
     {"template": tpl(env={"A": "1", "B": "x=y", "C": ""})}),
    ("env last wins", {"env": ("A=1", "A=2")}, {"template": tpl(env={"A": "2"})}),
    ("constraint", {"constraint": ("node.labels.zone==eu", "node.role != manager")},
     {"template": tpl(), "placement": {"constraints": ["node.labels.zone==eu",
                                                       "node.role != manager"]}}),
    ("placement pref", {"placement_pref": ("spread=node.labels.zone",)},
     {"template": tpl(), "placement": {"preferences": [{"spread": "node.labels.zone"}]}}),
    ("max replicas per node", {"max_replicas_per_node": "2"},
     {"template": tpl(), "placement": {"maxReplicasPerNode": 2}}),
    ("rebalance", {"rebalance": True}, {"template": tpl(), "placement": {"rebalance": True}}),
    ("no rebalance: absent, no stored default", {"rebalance": False}, {"template": tpl()}),
    ("reserve cpu", {"reserve_cpu": "0.5"},
     {"template": tpl(resources={"reservations": {"cpus": 0.5}})}),
    ("reserve cpu float", {"reserve_cpu": 0.25},
     {"template": tpl(resources={"reservations": {"cpus": 0.25}})}),
    ("limit cpu int", {"limit_cpu": 2}, {"template": tpl(resources={"limits": {"cpus": 2.0}})}),
    ("limit cpu .5", {"limit_cpu": ".5"}, {"template": tpl(resources={"limits": {"cpus": 0.5}})}),
    ("reserve memory Mi", {"reserve_memory": "64Mi"},
     {"template": tpl(resources={"reservations": {"memory": "64Mi"}})}),
    ("limit memory Gi", {"limit_memory": "1.5Gi"},
     {"template": tpl(resources={"limits": {"memory": "1.5Gi"}})}),
    ("limit memory int", {"limit_memory": 1024},
     {"template": tpl(resources={"limits": {"memory": "1024"}})}),
    ("restart policy", {"restart_condition": "on-failure", "restart_delay": "5s",
                        "restart_max_attempts": "3", "restart_window": "1m"},
     {"template": tpl(restartPolicy={"condition": "on-failure", "delay": "5s",
                                     "maxAttempts": 3, "window": "1m"})}),
    ("health", {"health_cmd": "wget -q -O /dev/null http://127.0.0.1/",
                "health_interval": "5s", "health_timeout": "2s",
                "health_retries": "3", "health_start_period": "0s"},
     {"template": tpl(healthcheck={
         "test": ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1/"],
         "interval": "5s", "timeout": "2s", "retries": 3, "startPeriod": "0s"})}),
    ("update config", {"update_parallelism": "2", "update_delay": "1m30s",
                       "update_failure_action": "rollback", "update_monitor": "500ms",
                       "update_max_failure_ratio": "0.2", "update_order": "start-first"},
     {"template": tpl(), "update": {"parallelism": 2, "delay": "1m30s",
                                    "failureAction": "rollback", "monitor": "500ms",
                                    "maxFailureRatio": 0.2, "order": "start-first"}}),
    ("rollback config", {"rollback_parallelism": 0, "rollback_delay": "1h",
                         "rollback_failure_action": "continue", "rollback_monitor": "1.5s",
                         "rollback_max_failure_ratio": 1, "rollback_order": "stop-first"},
     {"template": tpl(), "rollback": {"parallelism": 0, "delay": "1h",
                                      "failureAction": "continue", "monitor": "1.5s",
                                      "maxFailureRatio": 1.0, "order": "stop-first"}}),
    ("stop grace", {"stop_grace_period": "10s"}, {"template": tpl(stopGracePeriod="10s")}),
    ("workdir and user", {"workdir": "/www", "user": "1000"},
     {"template": tpl(workdir="/www", user="1000")}),
]


@pytest.mark.parametrize("kw,spec", [(kw, spec) for _, kw, spec in GOOD],
                         ids=[name for name, _, _ in GOOD])
def test_create_flag(kw: dict[str, Any], spec: dict[str, Any]) -> None:
    assert spec_of(**kw) == spec


SIZES = [("64Mi", "64Mi"), ("1Gi", "1Gi"), ("512M", "512M"), ("100k", "100k"),
         ("1024", "1024"), ("10b", "10b"), ("64m", "64Mi"), ("64MB", "64Mi"),
         ("64mb", "64Mi"), ("1g", "1Gi"), ("1GB", "1Gi"), ("1GiB", "1Gi"),
         ("512kb", "512Ki"), ("2t", "2Ti"), ("1.5g", "1.5Gi"), ("100B", "100")]


@pytest.mark.parametrize("raw,stored", SIZES, ids=[raw for raw, _ in SIZES])
def test_memory_sizes(raw: str, stored: str) -> None:
    assert spec_of(limit_memory=raw)["template"]["resources"]["limits"]["memory"] == stored


@pytest.mark.parametrize("raw", ["10s", "1m30s", "0s", "500ms", "1.5h", "2h45m", "10us", "3ns"])
def test_durations_kept(raw: str) -> None:
    assert spec_of(update_delay=raw)["update"]["delay"] == raw


def test_metadata() -> None:
    doc = build_service(ServiceFlags(name="web", namespace="prod", image="web:1",
                                     labels=("app=web", "tier=")))
    assert doc == {"apiVersion": API_VERSION, "kind": "Service",
                   "metadata": {"name": "web", "namespace": "prod",
                                "labels": {"app": "web", "tier": ""}},
                   "spec": {"template": {"image": "web:1"}}}


def test_namespace_left_to_defaults() -> None:
    assert build_service(ServiceFlags(name="web", image="x"))["metadata"] == {"name": "web"}


def test_random_name_when_no_name() -> None:
    name = build_service(ServiceFlags(image="x"))["metadata"]["name"]
    assert re.fullmatch(r"svc-[a-z0-9]{6}", name)


def test_random_name_is_dns_label_and_seedable() -> None:
    assert random_name(random.Random(1)) == random_name(random.Random(1))
    for _ in range(50):
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", random_name())


# --- create: one case per bad input -----------------------------------------

def update_only(field: str) -> dict[str, Any]:
    return {field: True if field == "force" else ("x",)}


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("secret octal mode", {"secret": ("source=s,mode=400",)}, "invalid --secret 'source=s,mode=400'"),
    ("no image", {"image": None}, "IMAGE"),
    ("empty image", {"image": ""}, "IMAGE"),
    ("image with space", {"image": "web 1"}, "IMAGE"),
    ("image the issue's way", {"image": "Kubeless Demo:LATEST!!"},
     'invalid IMAGE: "Kubeless Demo:LATEST!!" is not a valid image reference'),
    ("image uppercase", {"image": "Web:1"}, "must be lowercase"),
    ("image short digest", {"image": "web@sha256:abc"}, "at least 32 hex digits"),
    ("empty command", {"command": ("",)}, "COMMAND"),
    ("bad name", {"name": "Web_1"}, "--name"),
    ("long name", {"name": "a" * 64}, "--name"),
    ("bad namespace", {"namespace": "-x"}, "--namespace"),
    ("replicas word", {"replicas": "three"}, "--replicas"),
    ("replicas negative", {"replicas": "-1"}, "--replicas"),
    ("replicas float", {"replicas": "1.5"}, "--replicas"),
    ("replicas bool", {"replicas": True}, "--replicas"),
    ("replicas underscore", {"replicas": "1_0"}, "--replicas"),
    ("mode unknown", {"mode": "batch"}, "--mode"),
    ("global-job with replicas", {"mode": "global-job", "replicas": 2}, "--mode global-job"),
    ("schedule", {"mode": "replicated-job", "schedule": "* * *"}, "--schedule"),
    ("max concurrent", {"mode": "replicated-job", "max_concurrent": "-1"}, "--max-concurrent"),
    ("run history", {"mode": "replicated-job", "run_history_limit": "x"}, "--run-history-limit"),
    ("global with replicas", {"mode": "global", "replicas": 2}, "--mode global"),
    ("publish empty", {"publish": ("",)}, "--publish"),
    ("publish word", {"publish": ("http",)}, "--publish"),
    ("publish zero", {"publish": ("0:80",)}, "--publish"),
    ("publish too big", {"publish": ("70000:80",)}, "--publish"),
    ("publish range", {"publish": ("8000-8001:80-81",)}, "--publish"),
    ("publish host ip", {"publish": ("127.0.0.1:8080:80",)}, "--publish"),
    ("publish bad proto", {"publish": ("80/sctp",)}, "--publish"),
    ("publish long no target", {"publish": ("published=8080",)}, "--publish"),
    ("publish long unknown key", {"publish": ("target=80,name=http",)}, "--publish"),
    ("publish long bad mode", {"publish": ("target=80,mode=vip",)}, "--publish"),
    ("publish long empty value", {"publish": ("target=80,published=",)}, "--publish"),
    ("publish long not a number", {"publish": ("target=eighty",)}, "--publish"),
    ("publish conflict", {"publish": ("8080:80", "8080:81")}, "already used"),
    ("mount empty", {"mount": ("",)}, "--mount"),
    ("mount no target", {"mount": ("type=volume,source=data",)}, "target"),
    ("mount relative target", {"mount": ("source=data,target=data",)}, "absolute"),
    ("mount bad type", {"mount": ("type=npipe,target=/a",)}, "type"),
    ("mount bind no source", {"mount": ("type=bind,target=/a",)}, "source"),
    ("mount bind relative", {"mount": ("type=bind,source=a,target=/a",)}, "source"),
    ("mount tmpfs source", {"mount": ("type=tmpfs,source=x,target=/a",)}, "tmpfs"),
    ("mount unknown option", {"mount": ("target=/a,volume-driver=local",)}, "volume-driver"),
    ("mount bad readonly", {"mount": ("target=/a,readonly=yes",)}, "readonly"),
    ("mount bare word", {"mount": ("target=/a,rw",)}, "--mount"),
    ("mount same target twice", {"mount": ("target=/a", "source=v,target=/a")}, "--mount"),
    ("env without =", {"env": ("A",)}, "--env"),
    ("env empty key", {"env": ("=1",)}, "--env"),
    ("env key with space", {"env": ("A B=1",)}, "--env"),
    ("label without =", {"labels": ("app",)}, "--label"),
    ("constraint no node.", {"constraint": ("labels.zone==eu",)}, "--constraint"),
    ("constraint bare node.", {"constraint": ("node.==eu",)}, "--constraint"),
    ("constraint single =", {"constraint": ("node.role=manager",)}, "--constraint"),
    ("constraint no value", {"constraint": ("node.role==",)}, "--constraint"),
    ("constraint other op", {"constraint": ("node.role>=manager",)}, "--constraint"),
    ("constraint unknown attribute", {"constraint": ("node.colour==blue",)},
     'invalid --constraint \'node.colour==blue\': unknown attribute "node.colour" (known: node.id'),
    ("constraint engine labels", {"constraint": ("engine.labels.os==linux",)},
     "do not report engine labels"),
    ("constraint role value", {"constraint": ("node.role==boss",)}, "manager or worker"),
    ("pref unknown attribute", {"placement_pref": ("spread=node.colour",)},
     'unknown attribute "node.colour"'),
    ("pref not spread", {"placement_pref": ("binpack=node.id",)}, "--placement-pref"),
    ("pref empty", {"placement_pref": ("spread=",)}, "--placement-pref"),
    ("max per node negative", {"max_replicas_per_node": "-2"}, "--replicas-max-per-node"),
    ("cpu word", {"reserve_cpu": "half"}, "--reserve-cpu"),
    ("cpu negative", {"limit_cpu": "-1"}, "--limit-cpu"),
    ("cpu nan", {"limit_cpu": float("nan")}, "--limit-cpu"),
    ("cpu inf", {"limit_cpu": "inf"}, "--limit-cpu"),
    ("cpu exponent", {"limit_cpu": "1e3"}, "--limit-cpu"),
    ("memory unit", {"reserve_memory": "64Xi"}, "--reserve-memory"),
    ("memory word", {"limit_memory": "lots"}, "--limit-memory"),
    ("memory negative", {"limit_memory": "-1Mi"}, "--limit-memory"),
    ("duration bare int", {"update_delay": "10"}, "use a unit, e.g. 10s"),
    ("duration bare zero", {"restart_window": "0"}, "use a unit"),
    ("duration word", {"update_monitor": "soon"}, "--update-monitor"),
    ("duration negative", {"restart_delay": "-5s"}, "--restart-delay"),
    ("duration days", {"stop_grace_period": "1d"}, "--stop-grace-period"),
    ("duration spaces", {"health_interval": "1m 30s"}, "--health-interval"),
    ("health cmd empty", {"health_cmd": " "}, "--health-cmd"),
    ("health retries", {"health_retries": "x"}, "--health-retries"),
    ("health timeout", {"health_timeout": "5"}, "--health-timeout"),
    ("health start", {"health_start_period": "later"}, "--health-start-period"),
    ("restart condition", {"restart_condition": "always"}, "--restart-condition"),
    ("restart attempts", {"restart_max_attempts": "-1"}, "--restart-max-attempts"),
    ("update action", {"update_failure_action": "stop"}, "--update-failure-action"),
    ("update order", {"update_order": "first"}, "--update-order"),
    ("update parallelism", {"update_parallelism": "all"}, "--update-parallelism"),
    ("update ratio above 1", {"update_max_failure_ratio": "1.5"}, "--update-max-failure-ratio"),
    ("rollback action rollback", {"rollback_failure_action": "rollback"},
     "--rollback-failure-action"),
    ("rollback order", {"rollback_order": "any"}, "--rollback-order"),
    ("rollback ratio", {"rollback_max_failure_ratio": "-0.1"}, "--rollback-max-failure-ratio"),
    ("workdir empty", {"workdir": ""}, "--workdir"),
    ("user with space", {"user": "a b"}, "--user"),
]
BAD += [(f"{field} on create", update_only(field), flag_name(field, update=True))
        for field in UPDATE_ONLY]


@pytest.mark.parametrize("kw,needle", [(kw, needle) for _, kw, needle in BAD],
                         ids=[name for name, _, _ in BAD])
def test_create_refuses(kw: dict[str, Any], needle: str) -> None:
    flags = ServiceFlags(**{"name": "web", "image": "web:1", **kw})
    with pytest.raises(FlagError) as err:
        build_service(flags)
    message = str(err.value)
    assert needle in message
    assert "\n" not in message


def test_error_names_flag_and_value() -> None:
    with pytest.raises(FlagError, match=r"^invalid --update-delay '10': use a unit"):
        build_service(ServiceFlags(image="x", update_delay="10"))


def test_flag_error_is_value_error() -> None:
    assert issubclass(FlagError, ValueError)


def test_update_rebalance_on_and_off() -> None:
    doc = build_service(ServiceFlags(name="web", image="web:1", max_replicas_per_node=2))
    on = update_service(doc, ServiceFlags(rebalance=True))
    assert on["spec"]["placement"] == {"maxReplicasPerNode": 2, "rebalance": True}
    assert update_service(on, ServiceFlags(rebalance=False))["spec"] == doc["spec"]
    assert update_service(on, ServiceFlags())["spec"] == on["spec"]  # unset: unchanged
    bare = build_service(ServiceFlags(name="web", image="web:1", rebalance=True))
    assert "placement" not in update_service(bare, ServiceFlags(rebalance=False))["spec"]


def test_every_field_is_covered_by_the_tables() -> None:
    covered = {k for _, kw, _ in GOOD + BAD for k in kw} | {"name", "namespace", "labels"}
    assert {f.name for f in dataclasses.fields(ServiceFlags)} <= covered


# --- update --------------------------------------------------------------------

FULL = ServiceFlags(
    name="web", namespace="default", image="web:1", command=("httpd", "-f"), replicas=3,
    publish=("8080:80", "53:53/udp"), mount=("type=bind,src=/a,dst=/a", "source=d,target=/d"),
    env=("A=1", "B=2"), labels=("app=web", "tier=front"),
    constraint=("node.labels.zone==eu", "node.role!=manager"),
    placement_pref=("spread=node.labels.zone",), reserve_cpu="0.25", reserve_memory="64Mi",
    limit_cpu="1", limit_memory="256Mi", restart_condition="any", restart_delay="5s",
    health_cmd="true", health_interval="5s", update_parallelism=1, update_delay="10s",
    update_order="start-first", rollback_monitor="5s", stop_grace_period="10s",
    workdir="/www", user="1000", max_replicas_per_node=2)


def full() -> dict[str, Any]:
    doc = build_service(FULL)
    doc["metadata"].update(uid="u-1", generation=4, resourceVersion="77")
    doc["status"] = {"replicas": 3, "runningReplicas": 3}
    return doc


def changed(doc: dict[str, Any], flags: ServiceFlags) -> dict[str, Any]:
    """update_service, asserting it left `doc` untouched."""
    before = copy.deepcopy(doc)
    new = update_service(doc, flags)
    assert doc == before
    return new


def test_update_without_flags_is_identity() -> None:
    doc = full()
    new = changed(doc, ServiceFlags())
    assert new == doc and new is not doc


def test_update_returns_independent_copy() -> None:
    doc = full()
    new = changed(doc, ServiceFlags(replicas=5))
    new["spec"]["template"]["env"]["Z"] = "9"
    new["metadata"]["labels"]["z"] = "9"
    assert "Z" not in doc["spec"]["template"]["env"]
    assert "z" not in doc["metadata"]["labels"]


UPDATES: list[tuple[str, ServiceFlags, tuple[str, ...], Any]] = [
    ("image", ServiceFlags(image="web:2"), ("spec", "template", "image"), "web:2"),
    ("replicas", ServiceFlags(replicas="5"), ("spec", "replicas"), 5),
    ("scale to zero", ServiceFlags(replicas=0), ("spec", "replicas"), 0),
    ("same mode", ServiceFlags(mode="replicated", replicas=2), ("spec", "replicas"), 2),
    ("env add and rm", ServiceFlags(env=("C=3", "A=9"), env_rm=("B",)),
     ("spec", "template", "env"), {"A": "9", "C": "3"}),
    ("env rm with value", ServiceFlags(env_rm=("A=whatever",)),
     ("spec", "template", "env"), {"B": "2"}),
    ("env rm then add same", ServiceFlags(env_rm=("A",), env=("A=5",)),
     ("spec", "template", "env"), {"A": "5", "B": "2"}),
    ("env rm all drops key", ServiceFlags(env_rm=("A", "B")), ("spec", "template", "env"), None),
    ("env rm unknown ignored", ServiceFlags(env_rm=("NOPE",)),
     ("spec", "template", "env"), {"A": "1", "B": "2"}),
    ("label add and rm", ServiceFlags(labels=("env=prod",), label_rm=("tier",)),
     ("metadata", "labels"), {"app": "web", "env": "prod"}),
    ("publish add", ServiceFlags(publish=("8443:443",)), ("spec", "ports"),
     [{"target": 80, "published": 8080}, {"target": 53, "published": 53, "protocol": "udp"},
      {"target": 443, "published": 8443}]),
    ("publish add existing", ServiceFlags(publish=("8080:80",)), ("spec", "ports"),
     [{"target": 80, "published": 8080}, {"target": 53, "published": 53, "protocol": "udp"}]),
    ("publish rm by target", ServiceFlags(publish_rm=("80",)), ("spec", "ports"),
     [{"target": 53, "published": 53, "protocol": "udp"}]),
    ("publish rm wrong protocol", ServiceFlags(publish_rm=("53",)), ("spec", "ports"),
     [{"target": 80, "published": 8080}, {"target": 53, "published": 53, "protocol": "udp"}]),
    ("publish rm udp", ServiceFlags(publish_rm=("53/udp",)), ("spec", "ports"),
     [{"target": 80, "published": 8080}]),
    ("publish rm full spec", ServiceFlags(publish_rm=("9999:80",)), ("spec", "ports"),
     [{"target": 53, "published": 53, "protocol": "udp"}]),
    ("publish move", ServiceFlags(publish_rm=("80",), publish=("9090:80",)), ("spec", "ports"),
     [{"target": 53, "published": 53, "protocol": "udp"}, {"target": 80, "published": 9090}]),
    ("publish rm all drops key", ServiceFlags(publish_rm=("80", "53/udp")), ("spec", "ports"),
     None),
    ("mount add", ServiceFlags(mount=("type=tmpfs,target=/tmp",)),
     ("spec", "template", "mounts"),
     [{"type": "bind", "source": "/a", "target": "/a", "readOnly": False},
      {"type": "volume", "source": "d", "target": "/d", "readOnly": False},
      {"type": "tmpfs", "target": "/tmp", "readOnly": False}]),
    ("mount rm", ServiceFlags(mount_rm=("/a",)), ("spec", "template", "mounts"),
     [{"type": "volume", "source": "d", "target": "/d", "readOnly": False}]),
    ("mount add replaces target", ServiceFlags(mount=("source=e,target=/d,ro",)),
     ("spec", "template", "mounts"),
     [{"type": "bind", "source": "/a", "target": "/a", "readOnly": False},
      {"type": "volume", "source": "e", "target": "/d", "readOnly": True}]),
    ("constraint add and rm", ServiceFlags(constraint=("node.labels.disk==ssd",),
                                           constraint_rm=("node.role != manager",)),
     ("spec", "placement", "constraints"), ["node.labels.zone==eu", "node.labels.disk==ssd"]),
    ("constraint add existing", ServiceFlags(constraint=("node.labels.zone==eu",)),
     ("spec", "placement", "constraints"), ["node.labels.zone==eu", "node.role!=manager"]),
    ("pref add", ServiceFlags(placement_pref=("spread=node.labels.rack",)),
     ("spec", "placement", "preferences"),
     [{"spread": "node.labels.zone"}, {"spread": "node.labels.rack"}]),
    ("pref rm", ServiceFlags(placement_pref_rm=("spread=node.labels.zone",)),
     ("spec", "placement", "preferences"), None),
    ("resources merge", ServiceFlags(limit_memory="1g"), ("spec", "template", "resources"),
     {"reservations": {"cpus": 0.25, "memory": "64Mi"},
      "limits": {"cpus": 1.0, "memory": "1Gi"}}),
    ("update config merge", ServiceFlags(update_failure_action="rollback"), ("spec", "update"),
     {"parallelism": 1, "delay": "10s", "order": "start-first", "failureAction": "rollback"}),
    ("health merge", ServiceFlags(health_retries=5), ("spec", "template", "healthcheck"),
     {"test": ["CMD-SHELL", "true"], "interval": "5s", "retries": 5}),
    ("force from zero", ServiceFlags(force=True), ("spec", "forceUpdate"), 1),
]


def dig(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        if key not in doc:
            return None
        doc = doc[key]
    return doc


@pytest.mark.parametrize("flags,path,want", [(f, p, w) for _, f, p, w in UPDATES],
                         ids=[name for name, _, _, _ in UPDATES])
def test_update_flag(flags: ServiceFlags, path: tuple[str, ...], want: Any) -> None:
    doc = full()
    new = changed(doc, flags)
    assert dig(new, path) == want
    # everything outside the touched path is as it was
    outside_new, outside_old = copy.deepcopy(new), copy.deepcopy(doc)
    for side in (outside_new, outside_old):
        dig(side, path[:-1]).pop(path[-1], None)
    assert outside_new == outside_old


def test_update_command_replaces_args() -> None:
    new = changed(full(), ServiceFlags(command=("nginx",)))
    assert new["spec"]["template"]["args"] == ["nginx"]
    new = changed(new, ServiceFlags(command=("nginx", "-g", "daemon off;")))
    assert new["spec"]["template"]["args"] == ["nginx", "-g", "daemon off;"]


def test_force_increments() -> None:
    doc = full()
    doc["spec"]["forceUpdate"] = 4
    assert changed(doc, ServiceFlags(force=True))["spec"]["forceUpdate"] == 5


def test_update_keeps_envelope_and_status() -> None:
    new = changed(full(), ServiceFlags(image="web:2"))
    assert new["metadata"]["resourceVersion"] == "77"
    assert new["metadata"]["generation"] == 4
    assert new["status"] == {"replicas": 3, "runningReplicas": 3}


def test_update_minimal_document() -> None:
    doc = {"apiVersion": API_VERSION, "kind": "Service", "metadata": {"name": "web"},
           "spec": {"template": {"image": "web:1"}}}
    new = changed(doc, ServiceFlags(env=("A=1",), labels=("x=y",), publish=("80",),
                                    env_rm=("B",), mount_rm=("/x",)))
    assert new["spec"] == {"template": {"image": "web:1", "env": {"A": "1"}},
                           "ports": [{"target": 80}]}
    assert new["metadata"] == {"name": "web", "labels": {"x": "y"}}


def test_removals_on_missing_collections_add_nothing() -> None:
    doc = {"apiVersion": API_VERSION, "kind": "Service", "metadata": {"name": "web"},
           "spec": {"template": {"image": "web:1"}}}
    flags = ServiceFlags(env_rm=("A",), label_rm=("a",), publish_rm=("80",),
                         mount_rm=("/a",), constraint_rm=("node.role==manager",),
                         placement_pref_rm=("spread=node.id",))
    assert changed(doc, flags) == doc


UPDATE_BAD: list[tuple[str, dict[str, Any], ServiceFlags, str]] = [
    ("replicas on global", {"mode": "global"}, ServiceFlags(replicas=2), "global"),
    ("change mode", {}, ServiceFlags(mode="global"), "--mode"),
    ("rename", {}, ServiceFlags(name="other"), "--name"),
    ("other namespace", {}, ServiceFlags(namespace="prod"), "--namespace"),
    ("bad env add", {}, ServiceFlags(env=("A",)), "--env-add"),
    ("bad label add", {}, ServiceFlags(labels=("a",)), "--label-add"),
    ("bad publish add", {}, ServiceFlags(publish=("x",)), "--publish-add"),
    ("bad publish rm", {}, ServiceFlags(publish_rm=("x",)), "--publish-rm"),
    ("publish conflict", {}, ServiceFlags(publish=("8080:81",)), "--publish-add"),
    ("bad mount add", {}, ServiceFlags(mount=("target=x",)), "--mount-add"),
    ("bad constraint add", {}, ServiceFlags(constraint=("zone==eu",)), "--constraint-add"),
    ("bad pref add", {}, ServiceFlags(placement_pref=("x",)), "--placement-pref-add"),
    ("bad pref rm", {}, ServiceFlags(placement_pref_rm=("x",)), "--placement-pref-rm"),
    ("bad image", {}, ServiceFlags(image=""), "--image"),
    ("image the issue's way", {}, ServiceFlags(image="Kubeless Demo:LATEST!!"),
     'invalid --image: "Kubeless Demo:LATEST!!" is not a valid image reference'),
    ("unknown constraint attribute", {}, ServiceFlags(constraint=("node.colour==blue",)),
     "--constraint-add 'node.colour==blue': unknown attribute"),
    ("bad duration", {}, ServiceFlags(update_delay="5"), "--update-delay"),
]


@pytest.mark.parametrize("spec_patch,flags,needle",
                         [(s, f, n) for _, s, f, n in UPDATE_BAD],
                         ids=[name for name, _, _, _ in UPDATE_BAD])
def test_update_refuses(spec_patch: dict[str, Any], flags: ServiceFlags, needle: str) -> None:
    doc = full()
    doc["spec"].update(spec_patch)
    before = copy.deepcopy(doc)
    with pytest.raises(FlagError, match=re.escape(needle)):
        update_service(doc, flags)
    assert doc == before


# --- properties: create and update agree ---------------------------------------

SCALAR_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "image": st.sampled_from(["web:1", "web:2", "registry:5000/app@sha256:" + "ab" * 32]),
    "replicas": st.integers(0, 50),
    "workdir": st.sampled_from(["/", "/www"]),
    "user": st.sampled_from(["1000", "nobody"]),
    "reserve_cpu": st.sampled_from(["0.25", "1", "2.5"]),
    "limit_memory": st.sampled_from(["64Mi", "1g", "512M"]),
    "restart_condition": st.sampled_from(["any", "on-failure", "none"]),
    "restart_delay": st.sampled_from(["5s", "1m30s"]),
    "health_cmd": st.sampled_from(["true", "curl -f http://localhost/"]),
    "health_retries": st.integers(0, 9),
    "update_parallelism": st.integers(0, 9),
    "update_failure_action": st.sampled_from(["pause", "continue", "rollback"]),
    "update_max_failure_ratio": st.sampled_from(["0", "0.5", "1"]),
    "rollback_order": st.sampled_from(["stop-first", "start-first"]),
    "stop_grace_period": st.sampled_from(["10s", "2m"]),
    "max_replicas_per_node": st.integers(0, 4),
}
scalar_flags = st.fixed_dictionaries({}, optional=SCALAR_VALUES)


@settings(max_examples=200)
@given(base=scalar_flags, change=scalar_flags)
def test_update_after_create_equals_create_with_both(base: dict[str, Any],
                                                     change: dict[str, Any]) -> None:
    created = build_service(ServiceFlags(name="web", **{"image": "web:1", **base}))
    updated = changed(created, ServiceFlags(**change))
    assert updated == build_service(ServiceFlags(name="web", **{"image": "web:1",
                                                                **base, **change}))


env_pairs = st.lists(st.tuples(st.sampled_from("ABCD"), st.sampled_from(["1", "2", ""])),
                     max_size=4)


@settings(max_examples=200)
@given(base=env_pairs, add=env_pairs, rm=st.lists(st.sampled_from("ABCDE"), max_size=3))
def test_env_update_matches_dict_semantics(base: list[tuple[str, str]],
                                           add: list[tuple[str, str]], rm: list[str]) -> None:
    created = build_service(ServiceFlags(name="w", image="x",
                                         env=tuple(f"{k}={v}" for k, v in base)))
    new = changed(created, ServiceFlags(env=tuple(f"{k}={v}" for k, v in add), env_rm=tuple(rm)))
    want = {k: v for k, v in dict(base).items() if k not in rm} | dict(add)
    assert new["spec"]["template"].get("env", {}) == want


ports = st.lists(st.tuples(st.integers(8000, 8003), st.integers(80, 82)), max_size=4,
                 unique_by=lambda p: p[0])


@settings(max_examples=200)
@given(base=ports, rm=st.lists(st.integers(80, 83), max_size=3))
def test_publish_rm_removes_exactly_those_targets(base: list[tuple[int, int]],
                                                  rm: list[int]) -> None:
    created = build_service(ServiceFlags(name="w", image="x",
                                         publish=tuple(f"{p}:{t}" for p, t in base)))
    new = changed(created, ServiceFlags(publish_rm=tuple(str(t) for t in rm)))
    assert new["spec"].get("ports", []) == [
        {"target": t, "published": p} for p, t in base if t not in rm]


def test_constraint_rm_removes_a_stored_constraint_that_no_longer_parses() -> None:
    doc = full()
    doc["spec"]["placement"]["constraints"] = ["node.colour==blue", "node.role!=manager"]
    new = update_service(doc, ServiceFlags(constraint_rm=("node.colour==blue",)))
    assert new["spec"]["placement"]["constraints"] == ["node.role!=manager"]


def test_create_a_scheduled_job() -> None:
    doc = build_service(ServiceFlags(name="nightly", image="busybox", mode="replicated-job",
                                     replicas=6, max_concurrent=2, schedule="0 3 * * *",
                                     run_history_limit=5))
    assert {k: doc["spec"][k] for k in ("mode", "replicas", "maxConcurrent", "schedule",
                                        "runHistoryLimit")} == {
        "mode": "replicated-job", "replicas": 6, "maxConcurrent": 2, "schedule": "0 3 * * *",
        "runHistoryLimit": 5}


# --- --env-file (docker's format) -------------------------------------------

def test_an_env_file_is_key_value_lines_with_comments_and_blank_lines() -> None:
    from kubeless_cli.service_flags import env_file_entries

    text = "# the app's settings\n\nA=1\n  B=two words = yes\nC=\nFROM_HOST\nUNSET\n"
    assert env_file_entries(text, "app.env", {"FROM_HOST": "h"}) == \
        ["A=1", "B=two words = yes", "C=", "FROM_HOST=h"]


def test_a_bad_env_file_line_is_one_line_naming_file_and_line() -> None:
    from kubeless_cli.service_flags import env_file_entries

    with pytest.raises(FlagError) as err:
        env_file_entries("A=1\nNOT A KEY=2\n", "app.env", {})
    assert str(err.value) == ("invalid --env-file app.env line 2: 'NOT A KEY=2' is not "
                              "KEY=VALUE (a key has no spaces)")
