"""From a Task to Docker's container config, and from Docker's inspect back to a report (pure).

``container_config(task, node_id, bind_addr)`` is everything ``docker.py``
passes to ``containers.create``: name (``<service>.<slot>.<task-id>``),
labels (task, service and node ids: how a restarted agent finds what it
made), image, entrypoint (template.command) and cmd (template.args), env
(plus KUBELESS_TASK_NAME, KUBELESS_NODE_NAME and KUBELESS_TASK_ID), workdir,
user, published ports, mounts (and each secret's and config's file, bound
read-only at its path from the node's tmpfs), limits, healthcheck, restart policy "no"
(kubeless replaces tasks itself), the stop timeout and, when the agent
serves cluster DNS, the container's nameserver and search domains
(``<namespace>.kubeless kubeless``). ``observed(inspect)``
turns a container's inspect document into a runtime report. No I/O here:
checking that a bind source exists is the caller's business.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kubeless.api import parse_cpus, parse_duration, parse_size
from kubeless.api.tasks import container_name, task_display_name

from kubeless_agent.errors import RuntimeFailure
from kubeless_agent.runtime import Report, Task, task_env, task_id

LABEL_TASK = "kubeless.task.id"
LABEL_NODE = "kubeless.node.id"
LABEL_NAMESPACE = "kubeless.service.namespace"
LABEL_SERVICE = "kubeless.service.name"
LABEL_TASK_NAME = "kubeless.task.name"
DEFAULT_GRACE = 10.0
DNS_ZONE = "kubeless"


@dataclass(frozen=True)
class ClusterDns:
    """The nameservers a container gets: the agent's DNS only (it answers ``kubeless.``
    and forwards every other name to the host's resolvers). One nameserver, as with
    Docker's embedded DNS: musl resolvers (Alpine, busybox) ask every nameserver at once
    and take the first answer, so a second one would break service discovery at random."""

    nameservers: tuple[str, ...]

    def search(self, namespace: str) -> list[str]:
        return [f"{namespace}.{DNS_ZONE}", DNS_ZONE]


def template(task: Task) -> dict[str, Any]:
    return dict(((task.get("spec") or {}).get("template")) or {})


def image_of(task: Task) -> str:
    image = str(template(task).get("image") or "")
    if not image:
        raise RuntimeFailure("the task has no image")
    return image


def labels(task: Task, node_id: str) -> dict[str, str]:
    spec = task.get("spec") or {}
    return {LABEL_TASK: task_id(task), LABEL_NODE: node_id,
            LABEL_NAMESPACE: str((task.get("metadata") or {}).get("namespace") or "default"),
            LABEL_SERVICE: str(spec.get("serviceName") or ""),
            LABEL_TASK_NAME: task_display_name(task)}


def environment(task: Task, node_id: str) -> dict[str, str]:
    """The template's env plus what every task gets to know about itself."""
    env = task_env(task)
    env.update({"KUBELESS_TASK_NAME": task_display_name(task), "KUBELESS_NODE_NAME": node_id,
                "KUBELESS_TASK_ID": task_id(task)})
    return env


def nanoseconds(text: Any) -> int:
    return int(parse_duration(str(text)) * 1e9) if text else 0


def grace_seconds(task: Task) -> float:
    text = template(task).get("stopGracePeriod")
    try:
        return parse_duration(str(text)) if text else DEFAULT_GRACE
    except ValueError:
        return DEFAULT_GRACE


def port_bindings(task: Task, bind_addr: str) -> dict[str, Any]:
    """``{"80/tcp": (addr,)}`` (ingress: Docker picks a free port) or ``(ip, published)`` (host)."""
    bindings: dict[str, Any] = {}
    for p in (task.get("spec") or {}).get("ports") or []:
        key = f"{int(p['target'])}/{p.get('protocol') or 'tcp'}"
        if (p.get("mode") or "ingress") == "host" and p.get("published"):
            bindings[key] = ("0.0.0.0", int(p["published"]))
        else:
            bindings[key] = (bind_addr,)
    return bindings


def mounts(task: Task) -> list[dict[str, Any]]:
    """Docker ``Mounts`` entries; bind sources are used as given (never created)."""
    found = []
    for m in template(task).get("mounts") or []:
        kind = m.get("type") or "volume"
        entry: dict[str, Any] = {"Target": m["target"], "Type": kind,
                                 "ReadOnly": bool(m.get("readOnly"))}
        if kind != "tmpfs":
            entry["Source"] = m.get("source") or ""
        found.append(entry)
    return found


def file_mounts(files: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Each secret's or config's file, (on the node, in the task), bound read-only: the
    value stays in the node's tmpfs, never in the container's writable layer."""
    return [{"Target": target, "Type": "bind", "Source": source, "ReadOnly": True}
            for source, target in files]


def bind_sources(task: Task) -> list[str]:
    return [str(m.get("source") or "") for m in template(task).get("mounts") or []
            if (m.get("type") or "volume") == "bind"]


def healthcheck(task: Task) -> dict[str, Any] | None:
    hc = template(task).get("healthcheck")
    if not hc or not hc.get("test"):
        return None
    return {"test": list(hc["test"]), "interval": nanoseconds(hc.get("interval")),
            "timeout": nanoseconds(hc.get("timeout")), "retries": int(hc.get("retries") or 0),
            "start_period": nanoseconds(hc.get("startPeriod"))}


def limits(task: Task) -> dict[str, Any]:
    res = template(task).get("resources") or {}
    lim, resv = res.get("limits") or {}, res.get("reservations") or {}
    out: dict[str, Any] = {}
    if lim.get("cpus"):
        out["nano_cpus"] = int(parse_cpus(lim["cpus"]) * 1e9)
    if lim.get("memory"):
        out["mem_limit"] = parse_size(lim["memory"])
    if resv.get("memory"):
        out["mem_reservation"] = parse_size(resv["memory"])
    return out


def container_config(task: Task, node_id: str, bind_addr: str,
                     dns: ClusterDns | None = None,
                     files: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Keyword arguments of the SDK's ``api.create_container``; ``host_config`` holds those
    of ``api.create_host_config`` (ports, mounts, limits, restart policy, dns). ``files``:
    (file on the node, path in the task) of each secret and config."""
    tpl = template(task)
    host: dict[str, Any] = {"restart_policy": {"Name": "no"},
                            "port_bindings": port_bindings(task, bind_addr),
                            "mounts": mounts(task) + file_mounts(files or []), **limits(task)}
    if dns is not None and dns.nameservers:
        namespace = str((task.get("metadata") or {}).get("namespace") or "default")
        host["dns"] = list(dns.nameservers)
        host["dns_search"] = dns.search(namespace)
    config: dict[str, Any] = {
        "image": image_of(task), "name": container_name(task), "labels": labels(task, node_id),
        "environment": environment(task, node_id), "detach": True,
        "ports": [_port_spec(key) for key in host["port_bindings"]],
        "stop_signal": "SIGTERM", "stop_timeout": max(1, math.ceil(grace_seconds(task))),
        "host_config": host}
    if tpl.get("command"):
        config["entrypoint"] = list(tpl["command"])
        config["command"] = list(tpl.get("args") or [])
    elif tpl.get("args"):
        config["command"] = list(tpl["args"])
    for field, key in (("workdir", "working_dir"), ("user", "user")):
        if tpl.get(field):
            config[key] = str(tpl[field])
    hc = healthcheck(task)
    if hc is not None:
        config["healthcheck"] = hc
    return config


def _port_spec(key: str) -> Any:
    port, _, proto = key.partition("/")
    return (int(port), proto) if proto != "tcp" else int(port)


# -- back from Docker ---------------------------------------------------------------

def reported_ports(task: Task | None, inspect: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{target, published, protocol, mode}]`` read from a started container."""
    bound = ((inspect.get("NetworkSettings") or {}).get("Ports")) or {}
    modes = {f"{int(p['target'])}/{p.get('protocol') or 'tcp'}": p.get("mode") or "ingress"
             for p in ((task or {}).get("spec") or {}).get("ports") or []}
    ports = []
    for key, hosts in sorted(bound.items()):
        if not hosts:
            continue
        target, _, proto = key.partition("/")
        ports.append({"target": int(target), "published": int(hosts[0]["HostPort"]),
                      "protocol": proto or "tcp", "mode": modes.get(key, "ingress")})
    return ports


def observed(inspect: dict[str, Any], task: Task | None = None,
             last_lines: str = "") -> Report:
    """A report from a container's inspect document (adoption and resync)."""
    state = inspect.get("State") or {}
    cid = inspect.get("Id")
    status = state.get("Status")
    health = (state.get("Health") or {}).get("Status")
    report: Report = {"containerId": cid, "ports": reported_ports(task, inspect)}
    if status in ("running", "paused", "restarting"):
        if health == "unhealthy":
            return {**report, "state": "failed", "error": "container unhealthy"}
        if health == "starting":
            return {**report, "state": "starting", "message": "waiting for the healthcheck"}
        return {**report, "state": "running"}
    if status == "created":
        return {**report, "state": "failed",
                "error": "the container was created but never started"}
    return {**report, **exited(int(state.get("ExitCode") or 0), last_lines)}


def exited(code: int, last_lines: str = "") -> Report:
    if code == 0:
        return {"state": "complete", "exitCode": 0}
    tail = f": {last_lines.strip()}" if last_lines.strip() else ""
    return {"state": "failed", "exitCode": code, "error": f"task exited with code {code}{tail}"}
