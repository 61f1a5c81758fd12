"""``service inspect --pretty`` and ``node inspect --pretty``: docker's human layout.

docker prints a service as ``ID:``, ``Name:``, ``Service Mode:``, then
``Placement:``, ``UpdateConfig:``, ``RollbackConfig:``, ``ContainerSpec:``,
``Resources:`` and ``Ports:`` blocks, one-space indented; a node as ``ID:``,
``Hostname:``, ``Status:`` and ``Manager Status:`` blocks, ``Platform:``,
``Resources:`` and ``Engine Version:``. Only what is set is shown, as docker
does. States read as tables show them (``Ready``, ``Active``). Pure functions of
the stored document (a node with its heartbeat merged).
"""

from __future__ import annotations

from typing import Any

from kubeless.api.columns import state_text

Lines = list[tuple[int, str, Any]]  # (indent, label, value; None: a block's heading)
RAW = object()  # a value that says the label is the whole line (a label's key=value)


def _layout(lines: Lines) -> str:
    """``label: value`` aligned in one column, as docker's tabwriter does."""
    width = max((indent + len(label) + 1 for indent, label, value in lines
                 if value is not None and value is not RAW), default=0)
    out = []
    for indent, label, value in lines:
        head = " " * indent + label + ("" if value is RAW else ":")
        bare = value is None or value is RAW
        out.append(head if bare else f"{head.ljust(width)} {value}".rstrip())
    return "\n".join(out) + "\n"


def _kv(mapping: dict[str, Any] | None) -> list[str]:
    return [f"{k}={v}" for k, v in sorted((mapping or {}).items())]


def service_pretty(service: dict[str, Any]) -> str:
    """One Service in docker's ``service inspect --pretty`` layout."""
    meta, spec = service.get("metadata") or {}, service.get("spec") or {}
    status = service.get("status") or {}
    lines: Lines = [(0, "ID", meta.get("uid", "")), (0, "Name", meta.get("name", "")),
                    (0, "Namespace", meta.get("namespace", "default"))]
    labels = _kv(meta.get("labels"))
    if labels:
        lines += [(0, "Labels", None)] + [(1, item, RAW) for item in labels]
    mode = str(spec.get("mode", "replicated"))
    lines.append((0, "Service Mode", mode.replace("-", " ").title()))
    if "global" not in mode:
        lines.append((1, "Replicas", spec.get("replicas", 1)))
    if status.get("runningReplicas") is not None:
        lines.append((1, "Running", status.get("runningReplicas")))
    lines += _placement(spec.get("placement") or {})
    for block, key in (("UpdateConfig", "update"), ("RollbackConfig", "rollback")):
        lines += _update_config(block, spec.get(key) or {})
    template = spec.get("template") or {}
    lines += _container(template)
    lines += _resources(template.get("resources") or {})
    lines += _ports(spec.get("ports") or [])
    return _layout(lines)


def _placement(placement: dict[str, Any]) -> Lines:
    lines: Lines = []
    if placement.get("constraints"):
        lines.append((1, "Constraints", "[" + " ".join(placement["constraints"]) + "]"))
    for pref in placement.get("preferences") or []:
        lines.append((1, "Preferences", f"Spread={pref.get('spread')}"))
    if placement.get("maxReplicasPerNode"):
        lines.append((1, "Max Replicas Per Node", placement["maxReplicasPerNode"]))
    return [(0, "Placement", None)] + lines if lines else []


def _update_config(block: str, config: dict[str, Any]) -> Lines:
    rows = (("parallelism", "Parallelism"), ("delay", "Delay"),
            ("failureAction", "On failure"), ("monitor", "Monitoring Period"),
            ("maxFailureRatio", "Max failure ratio"), ("order", "Update order"))
    lines: Lines = [(1, label, config[key]) for key, label in rows if key in config]
    return [(0, block, None)] + lines if lines else []


def _container(template: dict[str, Any]) -> Lines:
    lines: Lines = [(0, "ContainerSpec", None), (1, "Image", template.get("image", ""))]
    for key, label in (("command", "Command"), ("args", "Args")):
        if template.get(key):
            lines.append((1, label, " ".join(str(a) for a in template[key])))
    env = _kv(template.get("env"))
    if env:
        lines.append((1, "Env", " ".join(env)))
    for key, label in (("workdir", "Dir"), ("user", "User"),
                       ("stopGracePeriod", "StopGracePeriod")):
        if template.get(key):
            lines.append((1, label, template[key]))
    health = template.get("healthcheck") or {}
    if health.get("test"):
        lines.append((1, "Healthcheck", " ".join(str(t) for t in health["test"][1:])))
    mounts = template.get("mounts") or []
    lines += [(0, "Mounts", None)] if mounts else []
    for mount in mounts:
        lines += [(1, "Target", mount.get("target")), (2, "Source", mount.get("source", "")),
                  (2, "ReadOnly", str(bool(mount.get("readOnly"))).lower()),
                  (2, "Type", mount.get("type", "volume"))]
    for kind, key in (("Secrets", "secrets"), ("Configs", "configs")):
        refs = template.get(key) or []
        if refs:
            lines.append((0, kind, None))
            lines += [(1, "Target", f"{r.get('target', r.get('source'))} "
                                    f"(source {r.get('source')})") for r in refs]
    return lines


def _resources(resources: dict[str, Any]) -> Lines:
    lines: Lines = []
    for block, key in (("Reservations", "reservations"), ("Limits", "limits")):
        values = resources.get(key) or {}
        if values:
            lines.append((1, block, None))
            lines += [(2, label, values[k]) for k, label in (("cpus", "CPU"), ("memory", "Memory"))
                      if k in values]
    return [(0, "Resources", None)] + lines if lines else []


def _ports(ports: list[dict[str, Any]]) -> Lines:
    if not ports:
        return []
    lines: Lines = [(0, "Ports", None)]
    for port in ports:
        lines += [(1, "PublishedPort", port.get("published", "")),
                  (2, "Protocol", port.get("protocol", "tcp")),
                  (2, "TargetPort", port.get("target")),
                  (2, "PublishMode", port.get("mode", "ingress"))]
    return lines


def node_pretty(node: dict[str, Any], manager: str) -> str:
    """One Node (its heartbeat merged) in docker's ``node inspect --pretty`` layout;
    ``manager``: its manager status (Leader, Reachable, Unreachable; "" for a worker)."""
    meta, spec = node.get("metadata") or {}, node.get("spec") or {}
    status = node.get("status") or {}
    lines: Lines = [(0, "ID", meta.get("name", ""))]
    labels = _kv(meta.get("labels"))
    if labels:
        lines += [(0, "Labels", None)] + [(1, f"- {item}", RAW) for item in labels]
    lines += [(0, "Hostname", status.get("hostname", "")),
              (0, "Joined at", meta.get("creationTimestamp", "")),
              (0, "Status", None), (1, "State", state_text(status.get("state", "down"))),
              (1, "Availability", state_text(spec.get("availability", "active"))),
              (1, "Address", status.get("address", ""))]
    if status.get("message"):
        lines.append((1, "Message", status["message"]))
    if spec.get("role") == "manager":
        lines += [(0, "Manager Status", None), (1, "Raft Status", "Reachable" if manager in ("Leader", "Reachable")
                                       else "Unreachable"),
                  (1, "Leader", "Yes" if manager == "Leader" else "No")]
    platform = status.get("platform") or {}
    if platform:
        lines += [(0, "Platform", None), (1, "Operating System", platform.get("os", "")),
                  (1, "Architecture", platform.get("arch", ""))]
    capacity = status.get("capacity") or {}
    if capacity:
        lines += [(0, "Resources", None), (1, "CPUs", capacity.get("cpus", "")),
                  (1, "Memory", _bytes(capacity.get("memory")))]
    if status.get("runtime"):
        lines.append((0, "Runtime", status["runtime"]))
    lines.append((0, "Engine Version", status.get("engineVersion") or ""))
    return _layout(lines)


def _bytes(value: Any) -> str:
    """docker's units.BytesSize: 1.944GiB."""
    try:
        size = float(value)
    except (TypeError, ValueError):
        return str(value or "")
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.4g}{unit}"
        size /= 1024
    return ""
