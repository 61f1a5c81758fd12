"""How resources are shown: tables from the CRDs' printer columns, YAML, JSON, names.

Tables follow kubectl: NAME first (NAMESPACE before it with ``-A``), then
the kind's printer columns of priority 0, and priority 1 with ``-o wide``.
Values a table shows but nobody stores (``2/3`` replicas, published ports)
are derived here into ``status`` before printing. A Secret is shown as
``kubeless.api.secrets.public_view`` has it, in every format: its size,
never its sealed text nor its digest (nor, when its key holds no valid
resource, the raw value).

A value in etcd that is not a resource (``Invalid``: not YAML, not a
mapping, the wrong kind) still gets its row, named from its key, with
``<invalid>`` in the first column; ``describe`` shows its key, the reason
and the start of the raw value.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from kubeless.api import Kind, cell, workload
from kubeless.api.columns import human_duration
from kubeless.api.ports import ports_text
from kubeless.api.secrets import public_view
from kubeless.api.workload import autoscale_of

try:
    _Dumper: Any = yaml.CSafeDumper
except AttributeError:  # PyYAML without libyaml
    _Dumper = yaml.SafeDumper

OUTPUTS = ("table", "wide", "yaml", "json", "name")
RAW_SHOWN = 2048  # bytes of an invalid value that describe shows


@dataclass(frozen=True)
class Invalid:
    """A value stored under a resource's key that is not that resource."""

    namespace: str | None
    name: str
    key: str
    reason: str
    mod_revision: int
    value: bytes

    @classmethod
    def of(cls, err: Any, ref: Any) -> Invalid:
        """From a store ``CorruptValue`` and the ``ResourceKey`` its key parses to."""
        name = ref.name if ref is not None else err.key.rsplit("/", 1)[-1]
        return cls(ref.namespace if ref is not None else None, name, err.key, err.reason,
                   err.mod_revision, err.value)


def invalid_warning(kind: Kind, bad: Invalid) -> str:
    """The stderr line ``get`` and ``ls`` print for an invalid value."""
    ns = f" -n {bad.namespace}" if kind.namespaced and bad.namespace != "default" else ""
    return (f'warning: {kind.singular} "{bad.name}" is invalid: {bad.reason} '
            f"(kubeless delete {kind.singular} {bad.name}{ns} removes it)")


def condition_warnings(kind: Kind, obj: dict[str, Any]) -> list[str]:
    """A stderr line per false condition the controllers set (Valid, TasksWritten)."""
    name = (obj.get("metadata") or {}).get("name")
    conditions = (obj.get("status") or {}).get("conditions") or []
    return [f'warning: {kind.singular} "{name}": {c.get("type")}=False: {c.get("message")}'
            for c in conditions if isinstance(c, dict) and c.get("status") == "False"]


def to_yaml(obj: Any) -> str:
    return str(yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False))


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"


def job_progress_text(service: dict[str, Any]) -> str:
    """A job's REPLICAS: ``3/6 (2 running)``, ``6/6 (completed)``, ``4/6 (failed)``, or,
    before its first run, ``0/6 (next 10:05)``."""
    spec, status = service.get("spec") or {}, service.get("status") or {}
    job = status.get("job") or {}
    total = job.get("total", status.get("replicas", spec.get("replicas", 0)
                                        if not workload.is_global(service) else 0))
    done = f"{job.get('succeeded', 0)}/{total}"
    state = job.get("state")
    if state == "complete":
        return f"{done} (completed)"
    if state == "failed":
        return f"{done} (failed)"
    if state == "running":
        return f"{done} ({job.get('running', 0)} running)"
    next_run = job.get("nextRunAt")
    if isinstance(next_run, (int, float)):
        return f"{done} (next {time.strftime('%H:%M', time.gmtime(next_run))})"
    return done


def decorate(obj: dict[str, Any]) -> dict[str, Any]:
    """Add the derived display fields a kind's columns read (in a copy)."""
    if obj.get("kind") == "Route":
        return _decorate_route(obj)
    if obj.get("kind") != "Service":
        return obj
    out = dict(obj)
    status = dict(out.get("status") or {})
    spec = out.get("spec") or {}
    running = status.get("runningReplicas", 0)
    if workload.is_job(out):
        status.setdefault("replicasText", job_progress_text(out))
    elif workload.is_global(out):
        desired = status.get("replicas", 0)  # eligible nodes, as replication counts them
        status.setdefault("replicasText", f"{running}/{desired}")
    else:
        scale = autoscale_of(out)
        auto = f" (auto {scale.get('min', 1)}-{scale.get('max')})" if scale else ""
        status.setdefault("replicasText", f"{running}/{spec.get('replicas', 0)}{auto}")
    status.setdefault("portsText", ports_text(status.get("ports") or spec.get("ports")))
    out["status"] = status
    return out


def _decorate_route(obj: dict[str, Any]) -> dict[str, Any]:
    """BACKENDS: the live split when the reader attached it (``status.backends``), else
    the weights; WEIGHTS: the weights."""
    from kubeless.api.routes import split_text, weights_text

    status = dict(obj.get("status") or {})
    split = status.get("backends")
    status.setdefault("weightsText", weights_text(obj))
    status.setdefault("backendsText", split_text(split) if split else status["weightsText"])
    return {**obj, "status": status}


def table(kind: Kind, items: list[dict[str, Any]], *, wide: bool = False,
          all_namespaces: bool = False, now: datetime | None = None,
          header: bool = True, invalid: Sequence[Invalid] = ()) -> str:
    now = now or datetime.now(timezone.utc)
    columns = [c for c in kind.printer_columns if c.priority == 0 or wide]
    with_ns = all_namespaces and kind.namespaced
    head = (["NAMESPACE"] if with_ns else []) + ["NAME"]
    head += [c.name.upper() for c in columns]
    rows: list[tuple[tuple[str, str], list[str]]] = []
    for raw in items:
        obj = decorate(raw)
        meta = obj.get("metadata") or {}
        ident = (meta.get("namespace") or "", meta.get("name", ""))
        cells = [cell(obj, c, now) for c in columns]
        rows.append((ident, ([ident[0]] if with_ns else []) + [ident[1]] + cells))
    for bad in invalid:
        ident = (bad.namespace or "", bad.name)
        cells = ["<invalid>"] + [""] * (len(columns) - 1) if columns else []
        rows.append((ident, ([ident[0]] if with_ns else []) + [ident[1]] + cells))
    rows.sort(key=lambda r: r[0])
    return format_rows(head if header else None, [row for _, row in rows])


def format_rows(head: list[str] | None, rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, three spaces apart (kubectl's look)."""
    everything = ([head] if head else []) + rows
    if not everything:
        return ""
    widths = [max(len(str(r[i])) for r in everything) for i in range(len(everything[0]))]
    lines = ["   ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in everything]
    return "\n".join(lines) + "\n"


def render(kind: Kind, items: list[dict[str, Any]], output: str, *, single: bool,
           all_namespaces: bool = False, invalid: Sequence[Invalid] = ()) -> str:
    """Tables and names include invalid values; YAML and JSON print resources only
    (every document printed is one a user could apply again)."""
    if output in ("table", "wide"):
        return table(kind, items, wide=output == "wide", all_namespaces=all_namespaces,
                     invalid=invalid)
    if output == "name":
        names = sorted([i["metadata"]["name"] for i in items] + [b.name for b in invalid])
        return "".join(f"{kind.singular}/{name}\n" for name in names)
    shown = [public_view(i) for i in items]
    body: Any = shown[0] if single and shown else {"apiVersion": "v1", "kind": "List",
                                                   "items": shown}
    return to_yaml(body) if output == "yaml" else to_json(body)


def describe(kind: Kind, obj: dict[str, Any]) -> str:
    """A person's view of one resource: identity first, then spec and status."""
    obj = public_view(obj)
    meta = obj.get("metadata") or {}
    lines = [f"Name:          {meta.get('name')}"]
    if kind.namespaced:
        lines.append(f"Namespace:     {meta.get('namespace')}")
    lines.append(f"Kind:          {kind.kind}")
    lines.append(f"Labels:        {_pairs(meta.get('labels'))}")
    lines.append(f"Annotations:   {_pairs(meta.get('annotations'))}")
    lines.append(f"UID:           {meta.get('uid', '')}")
    lines.append(f"Created:       {meta.get('creationTimestamp', '')}")
    lines.append(f"Generation:    {meta.get('generation', '')}")
    lines.append(f"Version:       {meta.get('resourceVersion', '')}")
    if kind.kind == "Service" and workload.is_job(obj):
        lines += job_lines(obj)
    out = "\n".join(lines) + "\n"
    if kind.kind == "Service" and autoscale_of(obj):
        out += autoscale_text(obj, time.time())
    for section in ("spec", "status"):
        if obj.get(section):
            out += f"{section.capitalize()}:\n" + _indent(to_yaml(obj[section]))
    return out


def job_lines(service: dict[str, Any]) -> list[str]:
    """describe's job block: the current run, its counts, the schedule, the last runs."""
    spec = service.get("spec") or {}
    job = (service.get("status") or {}).get("job") or {}
    lines = [f"Job:           {workload.mode_of(service)}, "
             f"{job_progress_text(service)}"
             + (f", at most {spec['maxConcurrent']} at once" if spec.get("maxConcurrent")
                else "")]
    if job.get("run"):
        lines.append(f"  Run:         {job['run']} ({job.get('trigger', '?')}), "
                     f"{job.get('state', '?')}: {job.get('succeeded', 0)} succeeded, "
                     f"{job.get('failed', 0)} failed, {job.get('running', 0)} running, "
                     f"started {_utc(job.get('startedAt'))}"
                     + (f", ended {_utc(job['completedAt'])}" if job.get("completedAt")
                        else ""))
    if spec.get("schedule"):
        lines.append(f"  Schedule:    {spec['schedule']} (UTC), next run "
                     f"{_utc(job.get('nextRunAt'))}, {job.get('skipped', 0)} ticks skipped"
                     + (f" (last {_utc(job['lastSkipped'])})" if job.get("lastSkipped")
                        else ""))
    for run in job.get("runs") or []:
        lines.append(f"  Run {run.get('run')}:".ljust(15) + f"{run.get('state')}, "
                     f"{run.get('succeeded', 0)} succeeded, {run.get('failed', 0)} failed, "
                     f"{_utc(run.get('startedAt'))} - {_utc(run.get('completedAt'))}")
    return lines


def _utc(when: Any) -> str:
    if not isinstance(when, (int, float)):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when))


def autoscale_text(service: dict[str, Any], now: float) -> str:
    """describe's Autoscale block: replicas, bounds, targets against what was observed, and
    the last decision with its reason and age (``status.autoscale``, the autoscaler's)."""
    scale = autoscale_of(service) or {}
    status = (service.get("status") or {}).get("autoscale") or {}
    replicas = (service.get("spec") or {}).get("replicas")
    observed = status.get("observed") or {}
    lines = [f"  Replicas:    {replicas} (min {scale.get('min', 1)}, max {scale.get('max')}), "
             f"scale-down delay {scale.get('scaleDownDelay', '5m')}"]
    for name, target, unit in (("cpu", scale.get("targetCPU"), "%"),
                               ("connections", scale.get("targetConnections"), "/s")):
        if target:
            seen = observed.get(name)
            lines.append(f"  {name.capitalize() + ':':<12} {'-' if seen is None else seen}{unit} "
                         f"of {target}{unit} target"
                         f" (over {status.get('counted', 0)} tasks reporting)")
    last = status.get("lastDecision") or {}
    if last:
        ago = human_duration(int(max(now - float(last.get("time") or now), 0)))
        lines.append(f"  Last:        {last.get('reason')} ({ago} ago)")
    else:
        lines.append("  Last:        no decision yet")
    if status.get("lastScaleTime"):
        ago = human_duration(int(max(now - float(status["lastScaleTime"]), 0)))
        lines.append(f"  Last scale:  {ago} ago")
    return "Autoscale:\n" + "\n".join(lines) + "\n"


def describe_invalid(kind: Kind, bad: Invalid) -> str:
    """An invalid value: where it is, why it is not a resource, and how it starts."""
    lines = [f"Name:          {bad.name}"]
    if kind.namespaced:
        lines.append(f"Namespace:     {bad.namespace}")
    lines += [f"Kind:          {kind.kind}",
              f"Key:           {bad.key}",
              f"Version:       {bad.mod_revision}",
              f"Invalid:       {bad.reason}",
              f"Value:         {len(bad.value)} bytes" + _how_much_shown(kind, bad)]
    hidden = kind.kind == "Secret"  # it may hold a value: never shown
    raw = "" if hidden else bad.value[:RAW_SHOWN].decode("utf-8", errors="replace")
    ns = f" -n {bad.namespace}" if kind.namespaced and bad.namespace != "default" else ""
    remedy = f"Remove it:     kubeless delete {kind.singular} {bad.name}{ns}"
    return "\n".join(lines) + "\n" + _indent(raw) + remedy + "\n"


def _how_much_shown(kind: Kind, bad: Invalid) -> str:
    if kind.kind == "Secret":
        return " (not shown: a secret's key)"
    return f" (the first {RAW_SHOWN} shown)" if len(bad.value) > RAW_SHOWN else ""


def _pairs(mapping: dict[str, str] | None) -> str:
    if not mapping:
        return "<none>"
    return "\n               ".join(f"{k}={v}" for k, v in sorted(mapping.items()))


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())
