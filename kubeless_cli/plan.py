"""What ``apply`` (and ``diff``) will do: a pure plan from desired and live state.

Given validated, defaulted documents and what etcd holds, each document is
created, configured (changed) or left unchanged; with ``--prune``, live
resources carrying the prune selector that no document names are pruned.
A changed spec bumps ``metadata.generation``, as in Kubernetes; a change of
labels or annotations alone does not. The live resource's identity (uid,
creation time, resourceVersion to compare) and status are kept; so are a
Service's rollout annotations, and a spec change remembers the live spec
as the previous one (controllers.rollout.annotations).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

Resource = dict[str, Any]
Ref = tuple[str, str | None, str]  # kind, namespace, name

CREATE, CONFIGURE, UNCHANGED, PRUNE = "created", "configured", "unchanged", "pruned"
# Only kinds users own are pruned; Nodes are registered by agents, Tasks by controllers.
PRUNABLE_KINDS = ("Service",)


@dataclass
class Action:
    verb: str
    ref: Ref
    new: Resource | None  # what will be stored (None for prune)
    live: Resource | None
    source: str = ""

    @property
    def writes(self) -> bool:
        return self.verb != UNCHANGED


def ref_of(doc: Resource) -> Ref:
    meta = doc["metadata"]
    return doc["kind"], meta.get("namespace"), meta["name"]


def merge(live: Resource, desired: Resource) -> tuple[Resource, bool, bool]:
    """(what to store, spec changed, anything changed) for applying desired over live."""
    new = copy.deepcopy(desired)
    meta = new["metadata"]
    live_meta = live.get("metadata") or {}
    for keep in ("uid", "creationTimestamp", "resourceVersion"):
        if keep in live_meta:
            meta[keep] = live_meta[keep]
    spec_changed = desired.get("spec") != live.get("spec")
    if new.get("kind") == "Service":  # the previous spec, for rollbacks (see there)
        from controllers.rollout.annotations import keep_previous

        keep_previous(new, live, spec_changed)
        meta = new["metadata"]
    generation = int(live_meta.get("generation") or 1)
    meta["generation"] = generation + 1 if spec_changed else generation
    if "status" in live:
        new["status"] = live["status"]
    else:
        new.pop("status", None)
    changed = spec_changed or any(
        (meta.get(f) or {}) != (live_meta.get(f) or {}) for f in ("labels", "annotations"))
    return new, spec_changed, changed


def plan_apply(desired: list[tuple[str, Resource]], live: dict[Ref, Resource],
               prune_candidates: list[Resource] | None = None) -> list[Action]:
    """Actions for (source, document) pairs against live resources keyed by ref."""
    actions: list[Action] = []
    for source, doc in desired:
        ref = ref_of(doc)
        current = live.get(ref)
        if current is None:
            actions.append(Action(CREATE, ref, copy.deepcopy(doc), None, source))
            continue
        new, _, changed = merge(current, doc)
        actions.append(Action(CONFIGURE if changed else UNCHANGED, ref, new, current, source))
    if prune_candidates is not None:
        wanted = {ref_of(doc) for _, doc in desired}
        for res in prune_candidates:
            ref = ref_of(res)
            if ref[0] in PRUNABLE_KINDS and ref not in wanted:
                actions.append(Action(PRUNE, ref, None, res))
    return actions


def duplicates(desired: list[tuple[str, Resource]]) -> list[str]:
    """Messages for resources declared twice (apply refuses them)."""
    seen: dict[Ref, str] = {}
    out = []
    for source, doc in desired:
        ref = ref_of(doc)
        if ref in seen:
            out.append(f"{source}: {_describe(ref)} is also declared at {seen[ref]}")
        else:
            seen[ref] = source
    return out


def _describe(ref: Ref) -> str:
    kind, ns, name = ref
    return f"{kind} {ns}/{name}" if ns else f"{kind} {name}"
