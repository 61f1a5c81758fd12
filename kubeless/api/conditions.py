"""What ``kubeless wait --for=condition=X`` waits for: one pure verdict per kind and condition.

A resource as users see it (a Service with its status, a Node merged with its
heartbeat by ``kubeless.api.nodes.with_heartbeat``) in, a ``Verdict`` out:

    Service Available  (not a job) the controllers have seen the current generation
                       (``status.observedGeneration`` and, once the rollout controller
                       wrote one, ``updateStatus.generation`` equal ``metadata.generation``:
                       old tasks running before a rollout starts are not the new spec
                       available), no rollout is under way or paused,
                       no condition is False (``Valid``, ``TasksWritten``), and
                       ``runningReplicas >= replicas``: Kubernetes' Deployment
                       ``Available`` plus its rollout being over
    Service Complete   (a job) ``status.job.state`` complete for the current generation;
                       ``failed`` ends the wait (``Verdict.failed`` says why)
    Node Ready         its heartbeat is live (``state: ready``)

Condition names match case-insensitively, as kubectl's do. Watching, deadlines and
printing are the CLI's (``kubeless_cli.wait_cmd``). Unlike ``kubeless.api.progress``
(what ``service create/update`` wait for: every slot's task, for the generation they
wrote), these read the status only, as kubectl's conditions do: a wait watches the
services' keys, not every task and report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubeless.api import workload
from kubeless.api.nodes import is_ready
from kubeless.api.progress import PAUSED, ROLLING

Resource = dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    """``met``: the condition holds; ``failed``: it never will (why), the wait ends."""

    met: bool
    reason: str = ""
    failed: bool = False


class UnknownCondition(ValueError):
    """The condition is not one this kind has (or not one this resource can reach)."""


def _generation(obj: Resource) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


def _false_condition(status: Resource) -> str | None:
    for c in status.get("conditions") or []:
        if isinstance(c, dict) and c.get("status") == "False":
            return f"{c.get('type')}=False: {c.get('message')}"
    return None


def service_available(svc: Resource) -> Verdict:
    if workload.is_job(svc):
        raise UnknownCondition(f'service "{svc["metadata"]["name"]}" is a job: wait for '
                               "condition=Complete")
    status = svc.get("status") or {}
    generation = _generation(svc)
    update = status.get("updateStatus") or {}
    bad = _false_condition(status)
    if bad:
        return Verdict(False, bad)
    if int(status.get("observedGeneration") or 0) < generation \
            or (update and int(update.get("generation") or 0) < generation):
        return Verdict(False, f"generation {generation} not observed yet")
    if update.get("state") in ROLLING + PAUSED:
        return Verdict(False, f"rollout {update.get('state')}: {update.get('message') or ''}")
    running, wanted = int(status.get("runningReplicas") or 0), int(status.get("replicas") or 0)
    if running < wanted:
        return Verdict(False, f"{running} of {wanted} tasks running")
    return Verdict(True)


def service_complete(svc: Resource) -> Verdict:
    if not workload.is_job(svc):
        raise UnknownCondition(f'service "{svc["metadata"]["name"]}" is not a job: wait for '
                               "condition=Available")
    status = svc.get("status") or {}
    job = status.get("job") or {}
    bad = _false_condition(status)
    if bad:
        return Verdict(False, bad)
    if int(status.get("observedGeneration") or 0) < _generation(svc):
        return Verdict(False, f"generation {_generation(svc)} not observed yet")
    state = job.get("state")
    if state == "complete":
        return Verdict(True)
    if state == "failed":
        return Verdict(False, f"job run {job.get('run')} failed ({job.get('failed', 0)} "
                              f"failed, {job.get('succeeded', 0)} of {job.get('total', 0)} "
                              "succeeded)", failed=True)
    return Verdict(False, f"job {state or 'not started'}")


def node_ready(node: Resource) -> Verdict:
    if is_ready(node):
        return Verdict(True)
    return Verdict(False, str((node.get("status") or {}).get("message") or "down"))


CONDITIONS: dict[tuple[str, str], Callable[[Resource], Verdict]] = {
    ("Service", "available"): service_available,
    ("Service", "complete"): service_complete,
    ("Node", "ready"): node_ready,
}


def condition_check(kind: str, condition: str) -> Callable[[Resource], Verdict]:
    """The verdict function of ``condition`` for ``kind``; ``UnknownCondition`` otherwise."""
    found = CONDITIONS.get((kind, condition.lower()))
    if found is None:
        known = sorted(c.capitalize() for k, c in CONDITIONS if k == kind)
        raise UnknownCondition(
            f"{kind} has no condition {condition}"
            + (f" (known: {', '.join(known)})" if known else
               f"; wait on a {kind} with --for=delete"))
    return found
