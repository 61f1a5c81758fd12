"""Events: what a controller or an agent did and why, as kubectl shows them (pure).

An Event names the object it is about (``involvedObject``: a Service, a Task
or a Node), a ``type`` (Normal, or Warning for what needs a look), a
CamelCase ``reason`` (Scheduled, FailedScheduling, Started, Failed, ...), a
one-line ``message`` and its ``source`` (the controller or the node's agent).
A Task's event also names its ``service``, so a service's events include
its tasks'.

Repeats are aggregated as Kubernetes does: an event with the same object,
type, reason, message and source component is the same Event (``event_id``
derives its key from them), whose ``count`` and ``lastTimestamp`` a repeat
moves on (``repeated``), shown as ``x7 over 3m`` (``frequency``).

Here: building (``new_event``), ids, repeats, reading filters (``for_object``,
``parse_for``, ``of_types``) and the text of one line. Writing them (a lease for
their time to live, best effort) is ``kubeless.store.events``'.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from kubeless.api.columns import human_duration

Event = dict[str, Any]
TYPES = ("Normal", "Warning")
CLUSTER_SCOPE = "_cluster"  # the namespace segment of a Node's events in the keyspace
_ID_LENGTH = 20
_KINDS = {"service": "Service", "services": "Service", "svc": "Service",
          "task": "Task", "tasks": "Task", "node": "Node", "nodes": "Node", "no": "Node"}


def event_id(kind: str, namespace: str, name: str, type_: str, reason: str, message: str,
             component: str) -> str:
    """The aggregation key: one Event per object, type, reason, message and source."""
    text = "\0".join((kind, namespace, name, type_, reason, message, component))
    return hashlib.sha256(text.encode()).hexdigest()[:_ID_LENGTH]


def new_event(*, kind: str, name: str, namespace: str = "", type_: str = "Normal",
              reason: str, message: str, component: str, host: str = "",
              service: str | None = None, timestamp: str) -> Event:
    """A first occurrence (count 1) at ``timestamp`` (RFC 3339)."""
    if type_ not in TYPES:
        raise ValueError(f"event type {type_!r} is not one of {', '.join(TYPES)}")
    involved: dict[str, str] = {"kind": kind, "name": name}
    if namespace:
        involved["namespace"] = namespace
    event: Event = {
        "apiVersion": "kubeless.io/v1", "kind": "Event",
        "metadata": {"name": event_id(kind, namespace, name, type_, reason, message, component),
                     "namespace": namespace or CLUSTER_SCOPE},
        "involvedObject": involved,
        "type": type_, "reason": reason, "message": one_line(message),
        "source": {"component": component, **({"host": host} if host else {})},
        "count": 1, "firstTimestamp": timestamp, "lastTimestamp": timestamp,
    }
    if service:
        event["service"] = service
    return event


def one_line(text: str, limit: int = 500) -> str:
    """Messages are one line (a runtime's error may hold several), and bounded."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def repeated(stored: Event, occurrence: Event) -> Event:
    """The stored Event after one more occurrence: count + 1, the later timestamp."""
    out = dict(stored)
    out["count"] = int(stored.get("count") or 1) + int(occurrence.get("count") or 1)
    out["lastTimestamp"] = max(str(stored.get("lastTimestamp") or ""),
                               str(occurrence.get("lastTimestamp") or ""))
    return out


def parse_for(text: str) -> tuple[str, str]:
    """``service/web`` -> ("Service", "web"); a one-line ValueError for anything else."""
    kind, sep, name = text.partition("/")
    if not sep or not name or kind.lower() not in _KINDS:
        raise ValueError(f"--for {text!r}: expected KIND/NAME with KIND service, task or node "
                         f"(e.g. service/web)")
    return _KINDS[kind.lower()], name


def for_object(event: Event, kind: str, name: str, namespace: str | None) -> bool:
    """Whether ``event`` is about that object; a Service's include its tasks'."""
    involved = event.get("involvedObject") or {}
    if namespace is not None and kind != "Node" \
            and (involved.get("namespace") or "") != namespace:
        return False
    if involved.get("kind") == kind and involved.get("name") == name:
        return True
    return kind == "Service" and event.get("service") == name


def of_types(events: Iterable[Event], types: Iterable[str]) -> list[Event]:
    wanted = {t.lower() for t in types}
    return [e for e in events if not wanted or str(e.get("type", "")).lower() in wanted]


def by_time(events: Iterable[Event]) -> list[Event]:
    """Oldest last occurrence first, as kubectl lists them."""
    return sorted(events, key=lambda e: (str(e.get("lastTimestamp") or ""),
                                         str((e.get("metadata") or {}).get("name") or "")))


def _moment(text: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def last_seen(event: Event, now: datetime) -> str:
    """How long ago the last occurrence was: ``3m``."""
    last = _moment(event.get("lastTimestamp"))
    return human_duration(int((now - last).total_seconds())) if last else "<unknown>"


def frequency(event: Event, now: datetime) -> str:
    """kubectl's ``(x7 over 3m)`` for a repeated event, ``""`` for a single one."""
    count = int(event.get("count") or 1)
    if count <= 1:
        return ""
    first = _moment(event.get("firstTimestamp"))
    span = human_duration(int((now - first).total_seconds())) if first else "<unknown>"
    return f"x{count} over {span}"


def object_text(event: Event) -> str:
    """``service/web``, ``task/k3v9...``, ``node/node-2``."""
    involved = event.get("involvedObject") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"
