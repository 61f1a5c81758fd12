"""How large a resource may be: what etcd accepts in one request, and what follows.

etcd refuses a request larger than its ``--max-request-bytes`` (1.5 MiB by
default). The largest request a Service causes is not its own put but the
scheduler's: a task carries the service's template, placement, ports and
labels, and is written together with its node's assignment key, which holds
the same bytes. So a Service is refused when what its tasks would copy from
it exceeds half that request, less a margin for keys, status and scores.
The CLI cannot know a server's limit; it assumes etcd's default (a cluster
run with a smaller one relies on the controllers skipping what etcd refuses).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from kubeless.api.errors import Violation

ETCD_MAX_REQUEST_BYTES = 1536 * 1024  # etcd's default --max-request-bytes
_MARGIN = 64 * 1024  # keys, ids, status, the scheduler's scores, protobuf framing
MAX_TASK_PAYLOAD_BYTES = (ETCD_MAX_REQUEST_BYTES - _MARGIN) // 2  # 753664 (736 KiB)


def task_payload_bytes(service: dict[str, Any]) -> int:
    """The bytes a task copies from ``service`` (template, placement, ports, labels),
    as a task stores them (compact JSON)."""
    spec = service.get("spec") if isinstance(service.get("spec"), dict) else {}
    meta = service.get("metadata") if isinstance(service.get("metadata"), dict) else {}
    assert isinstance(spec, dict) and isinstance(meta, dict)
    copied = [spec.get("template"), spec.get("placement"), spec.get("ports"), meta.get("labels")]
    return len(json.dumps(copied, separators=(",", ":"), default=str).encode())


def size_violations(kind: str, doc: dict[str, Any]) -> Iterator[Violation]:
    """A Service whose tasks could never be scheduled: too large for one etcd request."""
    if kind != "Service":
        return
    size = task_payload_bytes(doc)
    if size > MAX_TASK_PAYLOAD_BYTES:
        yield Violation("spec", f"too large to schedule: its tasks would carry {size} bytes "
                                f"of it, more than {MAX_TASK_PAYLOAD_BYTES} (a task and its "
                                f"node's assignment must fit in one etcd request of 1.5 MiB)")
