"""What ``apply`` (and ``diff``) will do: a pure plan from desired and live state.

Given validated, defaulted documents and what etcd holds, each document is
created, configured (changed) or left unchanged; with ``--prune``, live
resources carrying the prune selector that no document names are pruned.
What a configured resource becomes is ``kubeless.api.service_writes.merge``:
a changed spec bumps ``metadata.generation``, as in Kubernetes; a change of
labels or annotations alone does not. The live resource's identity (uid,
creation time, resourceVersion to compare) and status are kept; so are a
Service's rollout annotations, and a spec change remembers the live spec
as the previous one; an autoscaled Service keeps its live replicas (the
action's ``note`` says so when the document said otherwise). Committing the plan is ``kubeless.store.services``'s.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from kubeless.api.service_writes import kept_replicas, merge

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
    note: str = ""  # said after the verb: what the write did not take from the document

    @property
    def writes(self) -> bool:
        return self.verb != UNCHANGED


def ref_of(doc: Resource) -> Ref:
    meta = doc["metadata"]
    return doc["kind"], meta.get("namespace"), meta["name"]


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
        held = kept_replicas(current, doc)
        note = f"replicas {held} kept: autoscaled" if held is not None else ""
        actions.append(Action(CONFIGURE if changed else UNCHANGED, ref, new, current, source,
                              note))
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
