"""From a Task to Docker's container config and back (pure; no engine)."""

from __future__ import annotations

from typing import Any

import pytest

from kubeless_agent.errors import RuntimeFailure
from kubeless_agent.runtime.docker_spec import container_config, exited, observed, reported_ports


def make_task(**template: Any) -> dict[str, Any]:
    ports = template.pop("ports", [])
    return {"metadata": {"name": "t" * 25, "namespace": "prod"},
            "spec": {"serviceName": "web", "slot": 2, "ports": ports,
                     "template": {"image": "web:1", **template}}}


def test_names_labels_env_and_restart_policy() -> None:
    c = container_config(make_task(env={"A": "1"}), "n1", "10.0.0.1")
    assert c["name"] == "web.2." + "t" * 25
    assert c["labels"] == {"kubeless.task.id": "t" * 25, "kubeless.node.id": "n1",
                           "kubeless.service.namespace": "prod", "kubeless.service.name": "web",
                           "kubeless.task.name": "web.2"}
    assert c["environment"] == {"A": "1", "KUBELESS_TASK_NAME": "web.2",
                                "KUBELESS_NODE_NAME": "n1", "KUBELESS_TASK_ID": "t" * 25}
    assert c["host_config"]["restart_policy"] == {"Name": "no"}
    assert "entrypoint" not in c and "command" not in c


@pytest.mark.parametrize("template,entrypoint,command", [
    ({"command": ["httpd"], "args": ["-f"]}, ["httpd"], ["-f"]),
    ({"command": ["httpd"]}, ["httpd"], []),  # a new entrypoint drops the image's CMD
    ({"args": ["-v"]}, None, ["-v"]),
])
def test_command_is_the_entrypoint_and_args_the_cmd(template: dict[str, Any],
                                                    entrypoint: list[str] | None,
                                                    command: list[str]) -> None:
    c = container_config(make_task(**template), "n1", "0.0.0.0")
    assert c.get("entrypoint") == entrypoint and c["command"] == command


def test_ports_mounts_limits_healthcheck_grace() -> None:
    c = container_config(make_task(
        ports=[{"target": 80, "published": 8080, "mode": "ingress"},
               {"target": 53, "published": 5353, "protocol": "udp", "mode": "host"}],
        mounts=[{"type": "bind", "source": "/etc", "target": "/e", "readOnly": True},
                {"type": "volume", "source": "data", "target": "/data"},
                {"type": "tmpfs", "target": "/tmp"}],
        resources={"limits": {"cpus": 0.5, "memory": "64Mi"},
                   "reservations": {"memory": "32Mi"}},
        healthcheck={"test": ["CMD", "true"], "interval": "2s", "timeout": "1s", "retries": 3,
                     "startPeriod": "500ms"},
        stopGracePeriod="1m", workdir="/www", user="1000"), "n1", "10.0.0.1")
    host = c["host_config"]
    assert host["port_bindings"] == {"80/tcp": ("10.0.0.1",), "53/udp": ("0.0.0.0", 5353)}
    assert c["ports"] == [80, (53, "udp")]
    assert host["mounts"] == [
        {"Target": "/e", "Type": "bind", "ReadOnly": True, "Source": "/etc"},
        {"Target": "/data", "Type": "volume", "ReadOnly": False, "Source": "data"},
        {"Target": "/tmp", "Type": "tmpfs", "ReadOnly": False}]
    assert host["nano_cpus"] == 500_000_000 and host["mem_limit"] == 64 << 20
    assert host["mem_reservation"] == 32 << 20
    assert c["healthcheck"] == {"test": ["CMD", "true"], "interval": 2_000_000_000,
                                "timeout": 1_000_000_000, "retries": 3,
                                "start_period": 500_000_000}
    assert c["stop_timeout"] == 60 and c["working_dir"] == "/www" and c["user"] == "1000"


def test_no_image_is_refused() -> None:
    with pytest.raises(RuntimeFailure, match="no image"):
        container_config(make_task(image=""), "n1", "0.0.0.0")


def inspect(status: str, code: int = 0, health: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"Status": status, "ExitCode": code}
    if health:
        state["Health"] = {"Status": health}
    return {"Id": "c1", "State": state, "NetworkSettings": {"Ports": {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}], "81/tcp": None}}}


@pytest.mark.parametrize("doc,state,extra", [
    (inspect("running"), "running", {}),
    (inspect("running", health="starting"), "starting", {}),
    (inspect("running", health="unhealthy"), "failed", {"error": "container unhealthy"}),
    (inspect("exited", 0), "complete", {"exitCode": 0}),
    (inspect("exited", 137), "failed", {"exitCode": 137}),
    (inspect("created"), "failed", {}),
])
def test_observed_states(doc: dict[str, Any], state: str, extra: dict[str, Any]) -> None:
    report = observed(doc)
    assert report["state"] == state and report["containerId"] == "c1"
    assert {k: report[k] for k in extra} == extra
    assert report["ports"] == [{"target": 80, "published": 32768, "protocol": "tcp",
                                "mode": "ingress"}]


def test_exited_carries_the_last_lines() -> None:
    assert exited(3, "boom\n") == {"state": "failed", "exitCode": 3,
                                   "error": "task exited with code 3: boom"}
    assert exited(0) == {"state": "complete", "exitCode": 0}
    assert reported_ports(make_task(ports=[{"target": 80, "mode": "host"}]),
                          inspect("running"))[0]["mode"] == "host"
