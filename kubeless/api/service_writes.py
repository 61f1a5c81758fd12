"""What a write makes of a stored resource: the rules every Service writer follows (pure).

Each function takes what was read (``live``) and returns what to store in
its place; committing it, compared with what was read, is
``kubeless.store.services``'s. The rules:

- identity: the live ``uid``, ``creationTimestamp`` and ``resourceVersion``
  (the version the write compares) are kept; the ``status`` is the
  controllers' and is never written back (``without_status``);
- generation: a created resource starts at ``FIRST_GENERATION``; a merge
  that changes the spec bumps ``metadata.generation``, as in Kubernetes,
  one that changes only labels or annotations does not; a rollback is
  always one generation on (it is a new rollout);
- a Service's rollout annotations (``rollout_annotations``) survive a
  merge that does not name them, and a spec change remembers the live
  spec as the previous one;
- replicas of an autoscaled Service (``kubeless.api.workload.autoscale_of``)
  are the autoscaler's: a merge or a rollback that leaves ``autoscale`` set
  keeps the live ``spec.replicas`` (``kept_replicas`` says when that
  overrides what the document said), and the autoscaler's own write
  (``scaled``) changes ``spec.replicas`` alone: no new generation, no previous
  spec, so it neither starts a rollout nor becomes what a rollback undoes;
- published ports: a write whose ports differ from the live ones
  (``changes_ports``) has them numbered and checked against every other
  Service (``kubeless.api.ports``), and is guarded, by the store.

``merge`` is apply's and ``service update``/``scale``'s; ``rolled_back``
is ``service rollback``'s, ``rollout undo``'s and the rollout controller's;
``paused`` and ``resumed`` are ``rollout pause|resume``'s, ``rebalance_requested``
``service rebalance``'s; ``scaled`` is the autoscaler's.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, NamedTuple

from kubeless.api.ports import carry_over
from kubeless.api.workload import autoscale_of
from kubeless.api.rollout_annotations import (PAUSED, PREVIOUS_SPEC, REBALANCE_REQUESTED,
                                              RESUMED, ROLLBACK, keep_previous, previous_of,
                                              previous_spec, rollback_of)

Resource = dict[str, Any]

FIRST_GENERATION = 1
IDENTITY = ("uid", "creationTimestamp", "resourceVersion")  # kept from the live resource


class Merged(NamedTuple):
    """What a merge stores, and what it changes."""

    new: Resource
    spec_changed: bool
    changed: bool  # the spec, labels or annotations: anything worth a write


def generation_of(resource: Resource) -> int:
    """The resource's generation (a stored one without any counts as the first)."""
    return int((resource.get("metadata") or {}).get("generation") or FIRST_GENERATION)


def next_generation(live: Resource, spec_changed: bool) -> int:
    """The generation after a merge over ``live``: one on only when the spec changes."""
    return generation_of(live) + 1 if spec_changed else generation_of(live)


def without_status(resource: Resource) -> Resource:
    """The resource without its status key (a shallow copy): what a spec write puts."""
    return {k: v for k, v in resource.items() if k != "status"}


def kept_replicas(live: Resource | None, desired: Resource) -> int | None:
    """The live replicas a write of ``desired`` over ``live`` keeps because ``desired``
    is autoscaled (the autoscaler owns them), when they differ from what ``desired``
    says; None when the rule leaves ``desired``'s replicas alone or they agree."""
    if live is None or desired.get("kind", "Service") != "Service" \
            or autoscale_of(desired) is None:
        return None
    held = (live.get("spec") or {}).get("replicas")
    if not isinstance(held, int) or held == (desired.get("spec") or {}).get("replicas"):
        return None
    return held


def with_replicas(resource: Resource, replicas: int) -> Resource:
    """The resource with ``spec.replicas`` set (a shallow copy down to the spec)."""
    return {**resource, "spec": {**(resource.get("spec") or {}), "replicas": replicas}}


def merge(live: Resource, desired: Resource) -> Merged:
    """What to store when ``desired`` (validated) is applied over ``live``: desired's
    spec, labels and annotations, live's identity and status, the generation rule,
    for a Service the rollout annotations kept and the previous spec remembered, and
    an autoscaled Service's live replicas kept (``kept_replicas``)."""
    held = kept_replicas(live, desired)
    new = copy.deepcopy(desired if held is None else with_replicas(desired, held))
    meta = new["metadata"]
    live_meta = live.get("metadata") or {}
    for keep in IDENTITY:
        if keep in live_meta:
            meta[keep] = live_meta[keep]
    spec_changed = new.get("spec") != live.get("spec")
    if new.get("kind") == "Service":
        keep_previous(new, live, spec_changed)
        meta = new["metadata"]
    meta["generation"] = next_generation(live, spec_changed)
    if "status" in live:
        new["status"] = live["status"]
    else:
        new.pop("status", None)
    changed = spec_changed or any(
        (meta.get(f) or {}) != (live_meta.get(f) or {}) for f in ("labels", "annotations"))
    return Merged(new, spec_changed, changed)


def rolled_back(live: Resource, reason: str, *, keep_current: bool = True) -> Resource:
    """The Service after a rollback of ``live``: its previous spec back in place, one
    generation on, marked a rollback. A manual rollback swaps current and previous
    (``keep_current``), as Swarm does; the automatic one forgets the failed spec, as
    Swarm's does. ValueError when there is no previous spec."""
    previous = previous_spec(live)
    name = (live.get("metadata") or {}).get("name")
    if previous is None:
        raise ValueError(f'service "{name}" has no previous spec to roll back to')
    restored = previous[1]
    held = kept_replicas(live, {"kind": "Service", "spec": restored})
    if held is not None:  # an autoscaled spec comes back at the replicas it scaled to
        restored = with_replicas({"spec": restored}, held)["spec"]
    out = copy.deepcopy(without_status(live))
    meta = out["metadata"]
    generation = generation_of(live)
    ann = dict(meta.get("annotations") or {})
    if keep_current:
        ann[PREVIOUS_SPEC] = previous_of(generation, live.get("spec") or {})
    else:
        ann.pop(PREVIOUS_SPEC, None)
    ann[ROLLBACK] = rollback_of(generation + 1, reason)
    meta["annotations"] = ann
    meta["generation"] = generation + 1
    out["spec"] = copy.deepcopy(restored)
    return out


def scaled(live: Resource, replicas: int) -> Resource:
    """The autoscaler's write: ``live`` (without its status) with ``spec.replicas`` set and
    nothing else changed. The generation stays (the generation counts users' changes:
    a rollback's marker and ``forceUpdate`` name one) and no previous spec is
    remembered, so a rollback never undoes a scale."""
    return with_replicas(without_status(live), replicas)


def annotated(live: Resource, put: dict[str, str], drop: Iterable[str] = ()) -> Resource:
    """``live`` with the annotations ``put`` set and ``drop`` removed (nothing else)."""
    meta = dict(live["metadata"])
    gone = set(drop)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in gone}
    annotations.update(put)
    meta["annotations"] = annotations
    return {**live, "metadata": meta}


def paused(live: Resource) -> Resource:
    """The Service with its rollout paused by the user."""
    return annotated(live, {PAUSED: "true"})


def resumed(live: Resource, now: float) -> Resource:
    """The Service with its rollout resumed by the user at ``now`` (unix seconds): a
    user's pause is lifted, a pause on failure before ``now`` is forgiven."""
    return annotated(live, {RESUMED: f"{now:.3f}"}, drop=(PAUSED,))


def rebalance_requested(live: Resource, now: float) -> Resource:
    """The Service with one rebalance requested at ``now`` (unix seconds); an annotation,
    so the generation stays and no rollout starts."""
    return annotated(live, {REBALANCE_REQUESTED: f"{now:.3f}"})


def changes_ports(desired: Resource, live: Resource | None) -> bool:
    """Whether writing ``desired`` over ``live`` (None: a create) changes the published
    ports (numbers ``live`` holds carried over), so the store numbers and checks them
    against every other Service and Route and guards the write. A Route always holds its
    port: creating one, or changing its port or protocol, changes published ports."""
    if desired.get("kind") == "Route":
        held = ("port", "protocol")
        return live is None or any((desired.get("spec") or {}).get(f)
                                   != (live.get("spec") or {}).get(f) for f in held)
    if live is None:
        return desired.get("kind") == "Service" and bool((desired.get("spec") or {}).get("ports"))
    ports = carry_over(desired, live)["spec"].get("ports")
    return bool(ports != (live.get("spec") or {}).get("ports"))


def replicas_refusal(live: Resource) -> str | None:
    """Why a user may not set the replicas of ``live`` (``service scale``, ``service update
    --replicas``): it is autoscaled; None when they may."""
    scale = autoscale_of(live)
    if scale is None:
        return None
    meta = live.get("metadata") or {}
    return (f"service {meta.get('namespace') or 'default'}/{meta.get('name')} is autoscaled "
            f"(min {scale.get('min', 1)}, max {scale.get('max')}): change or remove "
            f"spec.autoscale to set replicas; nothing was written")
