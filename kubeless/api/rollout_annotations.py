"""What a Service carries for rollouts, in its own metadata.annotations (pure).

The Service schema has no room beside ``spec`` (additionalProperties:
false), and a second key would need a second write, so the rollout's
inputs live in annotations, written in the same put as the spec:

    kubeless.io/previous-spec     JSON {"generation": G, "spec": {...}}: the spec the
                                  service had before its last spec change (Swarm's
                                  PreviousSpec); written by every merge that changes
                                  the spec (``service_writes.merge``) and by rollbacks
    kubeless.io/rollback          JSON {"generation": G, "reason": "..."}: generation G is
                                  a rollback (rolled out with spec.rollback, states
                                  rollback_*); a stale value (another G) means nothing
    kubeless.io/rollout-paused    "true": the user paused the rollout (rollout pause)
    kubeless.io/rollout-resumed   unix seconds: the user resumed (rollout resume); a
                                  rollout paused on failure before that time goes on
    kubeless.io/rebalance-requested
                                  unix seconds: the user asked for one rebalance
                                  (service rebalance); pending while newer than the
                                  status' ``rebalance.requested``

This module is their vocabulary: the names, how each is read (a missing or
unreadable value reads as absent) and written, and which survive an apply
that does not name them (``keep_previous``). Changing annotations does not
bump the generation, so pausing never starts a rollout. The Services a
write produces (merged, rolled back, paused, resumed) are built in
``service_writes``; the rollout controller reads these annotations.
"""

from __future__ import annotations

import json
from typing import Any

Resource = dict[str, Any]

PREVIOUS_SPEC = "kubeless.io/previous-spec"
ROLLBACK = "kubeless.io/rollback"
PAUSED = "kubeless.io/rollout-paused"
RESUMED = "kubeless.io/rollout-resumed"
REBALANCE_REQUESTED = "kubeless.io/rebalance-requested"
MANUAL_ROLLBACK = "manually requested rollback"  # the reason of a user's rollback (Swarm's words)
KEPT = (PREVIOUS_SPEC, ROLLBACK, PAUSED, RESUMED, REBALANCE_REQUESTED)  # survive an apply that does not name them


def annotations_of(service: Resource) -> dict[str, str]:
    """A copy of the resource's annotations (empty when it has none)."""
    return dict((service.get("metadata") or {}).get("annotations") or {})


def _json(service: Resource, name: str) -> dict[str, Any] | None:
    raw = annotations_of(service).get(name)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def previous_spec(service: Resource) -> tuple[int, Resource] | None:
    """(generation, spec) the service had before its last spec change, when kept."""
    value = _json(service, PREVIOUS_SPEC)
    if value is None or not isinstance(value.get("spec"), dict):
        return None
    return int(value.get("generation") or 0), value["spec"]


def rollback_reason(service: Resource) -> str | None:
    """Why the service's current generation is a rollback, or None when it is not one."""
    value = _json(service, ROLLBACK)
    generation = int((service.get("metadata") or {}).get("generation") or 0)
    if value is None or int(value.get("generation") or -1) != generation:
        return None
    return str(value.get("reason") or "rollback")


def is_paused(service: Resource) -> bool:
    return annotations_of(service).get(PAUSED) == "true"


def resumed_at(service: Resource) -> float:
    """When the user last resumed the rollout (0: never, or unreadable)."""
    return _seconds(service, RESUMED)


def rebalance_requested_at(service: Resource) -> float:
    """When the user last asked for a rebalance (0: never, or unreadable)."""
    return _seconds(service, REBALANCE_REQUESTED)


def _seconds(service: Resource, name: str) -> float:
    try:
        return float(annotations_of(service).get(name) or 0)
    except ValueError:
        return 0.0


def previous_of(generation: int, spec: Resource) -> str:
    """The previous-spec annotation's value for ``spec`` at ``generation``."""
    return json.dumps({"generation": generation, "spec": spec}, sort_keys=True,
                      separators=(",", ":"))


def rollback_of(generation: int, reason: str) -> str:
    """The rollback annotation's value: ``generation`` is a rollback, for ``reason``."""
    return json.dumps({"generation": generation, "reason": reason}, separators=(",", ":"))


def keep_previous(new: Resource, live: Resource, spec_changed: bool) -> None:
    """In ``new`` (about to replace ``live``): keep the rollout annotations ``new`` does
    not name, and when the spec changes, remember live's spec as the previous one
    (unless ``new`` says otherwise: a rollback sets its own)."""
    live_ann = annotations_of(live)
    ann = annotations_of(new)
    explicit = ann.get(PREVIOUS_SPEC) not in (None, live_ann.get(PREVIOUS_SPEC))
    for name in KEPT:
        if name in live_ann and name not in ann:
            ann[name] = live_ann[name]
    if spec_changed and not explicit:
        live_meta = live.get("metadata") or {}
        ann[PREVIOUS_SPEC] = previous_of(int(live_meta.get("generation") or 1),
                                         live.get("spec") or {})
    if ann:
        new.setdefault("metadata", {})["annotations"] = ann
