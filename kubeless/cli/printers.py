"""How resources are shown: tables from the CRDs' printer columns, YAML, JSON, names.

Tables follow kubectl: NAME first (NAMESPACE before it with ``-A``), then
the kind's printer columns of priority 0, and priority 1 with ``-o wide``.
Values a table shows but nobody stores (``2/3`` replicas, published ports)
are derived here into ``status`` before printing.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import yaml

from kubeless.api import Kind, cell

try:
    _Dumper: Any = yaml.CSafeDumper
except AttributeError:  # PyYAML without libyaml
    _Dumper = yaml.SafeDumper

OUTPUTS = ("table", "wide", "yaml", "json", "name")


def to_yaml(obj: Any) -> str:
    return str(yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False))


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"


def ports_text(ports: list[dict[str, Any]] | None) -> str:
    """``*:8080->80/tcp`` per port, as ``docker service ls`` shows them."""
    parts = []
    for p in ports or []:
        published = p.get("published")
        where = f"*:{published}->" if published else ""
        parts.append(f"{where}{p.get('target')}/{p.get('protocol', 'tcp')}")
    return ",".join(parts)


def decorate(obj: dict[str, Any]) -> dict[str, Any]:
    """Add the derived display fields a kind's columns read (in a copy)."""
    if obj.get("kind") != "Service":
        return obj
    out = dict(obj)
    status = dict(out.get("status") or {})
    spec = out.get("spec") or {}
    running = status.get("runningReplicas", 0)
    if spec.get("mode") == "global":
        desired = status.get("replicas", 0)  # eligible nodes, as replication counts them
    else:
        desired = spec.get("replicas", 0)
    status.setdefault("replicasText", f"{running}/{desired}")
    status.setdefault("portsText", ports_text(status.get("ports") or spec.get("ports")))
    out["status"] = status
    return out


def table(kind: Kind, items: list[dict[str, Any]], *, wide: bool = False,
          all_namespaces: bool = False, now: datetime | None = None,
          header: bool = True) -> str:
    now = now or datetime.now(timezone.utc)
    columns = [c for c in kind.printer_columns if c.priority == 0 or wide]
    head = (["NAMESPACE"] if all_namespaces and kind.namespaced else []) + ["NAME"]
    head += [c.name.upper() for c in columns]
    rows = []
    for raw in items:
        obj = decorate(raw)
        meta = obj.get("metadata") or {}
        row = [meta.get("namespace", "")] if all_namespaces and kind.namespaced else []
        row.append(meta.get("name", ""))
        row += [cell(obj, c, now) for c in columns]
        rows.append(row)
    return format_rows(head if header else None, rows)


def format_rows(head: list[str] | None, rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, three spaces apart (kubectl's look)."""
    everything = ([head] if head else []) + rows
    if not everything:
        return ""
    widths = [max(len(str(r[i])) for r in everything) for i in range(len(everything[0]))]
    lines = ["   ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in everything]
    return "\n".join(lines) + "\n"


def render(kind: Kind, items: list[dict[str, Any]], output: str, *, single: bool,
           all_namespaces: bool = False) -> str:
    if output in ("table", "wide"):
        return table(kind, items, wide=output == "wide", all_namespaces=all_namespaces)
    if output == "name":
        return "".join(f"{kind.singular}/{i['metadata']['name']}\n" for i in items)
    body: Any = items[0] if single and items else {"apiVersion": "v1", "kind": "List",
                                                   "items": items}
    return to_yaml(body) if output == "yaml" else to_json(body)


def describe(kind: Kind, obj: dict[str, Any]) -> str:
    """A person's view of one resource: identity first, then spec and status."""
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
    out = "\n".join(lines) + "\n"
    for section in ("spec", "status"):
        if obj.get(section):
            out += f"{section.capitalize()}:\n" + _indent(to_yaml(obj[section]))
    return out


def _pairs(mapping: dict[str, str] | None) -> str:
    if not mapping:
        return "<none>"
    return "\n               ".join(f"{k}={v}" for k, v in sorted(mapping.items()))


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())
