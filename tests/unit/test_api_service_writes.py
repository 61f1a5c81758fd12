"""What a write makes of a stored Service, as pure functions (kubeless.api.service_writes):
merge and its generation rule, rollbacks, pause and resume, and when ports need the
store's guarded check."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeless.api import rollout_annotations as ann
from kubeless.api.service_writes import (FIRST_GENERATION, changes_ports, kept_replicas,
                                         merge, next_generation, paused, replicas_refusal,
                                         resumed, rolled_back, scaled, without_status)

Resource = dict[str, Any]


def service(image: str = "web:2", *, generation: int | None = 2, replicas: int = 1,
            labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
            ports: list[Resource] | None = None, status: Resource | None = None,
            identity: bool = True) -> Resource:
    meta: Resource = {"name": "web", "namespace": "default"}
    if identity:
        meta.update(uid="u-1", creationTimestamp="2026-01-01T00:00:00Z", resourceVersion="41")
    if generation is not None:
        meta["generation"] = generation
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    spec: Resource = {"replicas": replicas, "template": {"image": image}}
    if ports is not None:
        spec["ports"] = ports
    out: Resource = {"apiVersion": "kubeless.io/v1", "kind": "Service", "metadata": meta,
                     "spec": spec}
    if status is not None:
        out["status"] = status
    return out


def desired(image: str = "web:2", **kw: Any) -> Resource:
    """A document as apply or service update hands it over: no identity, no generation."""
    return service(image, generation=None, identity=False, **kw)


# -- the generation rule ------------------------------------------------------------------

GENERATIONS: dict[str, tuple[int | None, bool, int]] = {
    "spec changed": (2, True, 3),
    "spec unchanged": (2, False, 2),
    "no generation stored counts as the first": (None, True, FIRST_GENERATION + 1),
    "no generation, unchanged": (None, False, FIRST_GENERATION),
}


@pytest.mark.parametrize("case", list(GENERATIONS))
def test_next_generation(case: str) -> None:
    stored, spec_changed, want = GENERATIONS[case]
    assert next_generation(service(generation=stored), spec_changed) == want


# -- merge -----------------------------------------------------------------------------------

MERGES: dict[str, tuple[Resource, Resource, bool, bool, int]] = {
    # (live, desired, spec changed, changed, generation after)
    "same document": (service(), desired(), False, False, 2),
    "new image": (service(), desired("web:3"), True, True, 3),
    "scale is a spec change": (service(), desired(replicas=3), True, True, 3),
    "labels only: changed, same generation": (service(), desired(labels={"a": "b"}),
                                              False, True, 2),
    "annotations only: changed, same generation": (
        service(), desired(annotations={"note": "x"}), False, True, 2),
    "empty labels equal no labels": (service(labels={}), desired(), False, False, 2),
    "a kept rollout annotation is no change": (
        service(annotations={ann.PAUSED: "true"}), desired(), False, False, 2),
}


@pytest.mark.parametrize("case", list(MERGES))
def test_merge(case: str) -> None:
    live, want, spec_changed, changed, generation = MERGES[case]
    merged = merge(live, want)
    assert (merged.spec_changed, merged.changed) == (spec_changed, changed)
    meta = merged.new["metadata"]
    assert meta["generation"] == generation
    for keep in ("uid", "creationTimestamp", "resourceVersion"):
        assert meta[keep] == live["metadata"][keep]
    assert merged.new["spec"] == want["spec"]


def test_merge_keeps_live_status_and_drops_desired_status() -> None:
    with_status = merge(service(status={"replicas": 1}), desired(status={"bogus": 1}))
    assert with_status.new["status"] == {"replicas": 1}
    without = merge(service(), desired(status={"bogus": 1}))
    assert "status" not in without.new


def test_merge_remembers_the_previous_spec_of_a_service_only() -> None:
    merged = merge(service("web:1"), desired("web:2"))
    assert ann.previous_spec(merged.new) == (2, service("web:1")["spec"])
    node_live = {"kind": "Node", "metadata": {"name": "n1", "generation": 4}, "spec": {"a": 1}}
    node = merge(node_live, {"kind": "Node", "metadata": {"name": "n1"}, "spec": {"a": 2}})
    assert node.new["metadata"]["generation"] == 5
    assert "annotations" not in node.new["metadata"]


def test_merge_does_not_touch_its_inputs() -> None:
    live, want = service(annotations={ann.PAUSED: "true"}), desired("web:3")
    before = copy.deepcopy((live, want))
    merge(live, want)
    assert (live, want) == before


def test_merge_unpacks_as_a_triple() -> None:  # bench/ and older callers unpack it
    new, spec_changed, changed = merge(service(), desired("web:3"))
    assert spec_changed and changed and new["metadata"]["generation"] == 3


@settings(max_examples=60, deadline=None)
@given(image=st.sampled_from(["web:1", "web:2", "web:3"]), replicas=st.integers(0, 5),
       labels=st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["x", "y"])),
       paused_=st.booleans())
def test_merging_the_same_document_again_changes_nothing(image: str, replicas: int,
                                                         labels: dict[str, str],
                                                         paused_: bool) -> None:
    live = service(annotations={ann.PAUSED: "true"} if paused_ else None)
    want = desired(image, replicas=replicas, labels=labels)
    first = merge(live, want).new
    again = merge(first, want)
    assert not again.changed and not again.spec_changed
    assert again.new["metadata"]["generation"] == first["metadata"]["generation"]
    assert first["metadata"]["generation"] in (2, 3)


# -- rollbacks ---------------------------------------------------------------------------

def with_previous(image: str = "web:2", previous: str = "web:1", **kw: Any) -> Resource:
    return service(image, annotations={ann.PREVIOUS_SPEC: ann.previous_of(
        1, service(previous)["spec"])}, **kw)


def test_rolled_back_swaps_current_and_previous() -> None:
    live = with_previous()
    back = rolled_back(live, "manual")
    assert back["spec"]["template"]["image"] == "web:1"
    assert back["metadata"]["generation"] == 3
    assert ann.rollback_reason(back) == "manual"
    previous = ann.previous_spec(back)
    assert previous is not None and previous[0] == 2
    assert previous[1]["template"]["image"] == "web:2"
    auto = rolled_back(live, "auto", keep_current=False)
    assert ann.previous_spec(auto) is None
    with pytest.raises(ValueError, match='service "web" has no previous spec'):
        rolled_back(service(), "x")


def test_rolled_back_keeps_identity_and_drops_the_status() -> None:
    live = with_previous(status={"replicas": 1}, labels={"app": "web"})
    back = rolled_back(live, "manual")
    assert "status" not in back
    assert back["metadata"]["labels"] == {"app": "web"}
    assert back["metadata"]["resourceVersion"] == "41"
    assert "status" in live and live["spec"]["template"]["image"] == "web:2"


def test_rolling_back_twice_returns_to_the_start() -> None:
    live = with_previous()
    twice = rolled_back(rolled_back(live, "a"), "b")
    assert twice["spec"] == live["spec"]
    assert twice["metadata"]["generation"] == 4
    assert ann.rollback_reason(twice) == "b"


# -- pause and resume -------------------------------------------------------------------

def test_paused_and_resumed() -> None:
    live = service(annotations={"mine": "x"})
    stopped = paused(live)
    assert ann.is_paused(stopped) and stopped["metadata"]["annotations"]["mine"] == "x"
    going = resumed(stopped, 12.25)
    assert not ann.is_paused(going) and ann.resumed_at(going) == 12.25
    assert going["metadata"]["annotations"][ann.RESUMED] == "12.250"
    assert going["spec"] == live["spec"]
    assert going["metadata"]["generation"] == live["metadata"]["generation"]
    assert "annotations" in live["metadata"] and not ann.is_paused(live)  # live untouched


def test_without_status() -> None:
    live = service(status={"replicas": 1})
    assert "status" not in without_status(live) and "status" in live


# -- when ports need the guarded check ---------------------------------------------------

HTTP = {"target": 80, "published": 30000, "protocol": "tcp", "mode": "ingress"}
PORTS: dict[str, tuple[Resource, Resource | None, bool]] = {
    "a create without ports": (desired(), None, False),
    "a create with ports": (desired(ports=[HTTP]), None, True),
    "a create with an empty ports list": (desired(ports=[]), None, False),
    "no ports before or after": (desired("web:3"), service(), False),
    "the same ports": (desired("web:3", ports=[HTTP]), service(ports=[HTTP]), False),
    "a number the live one holds is carried over": (
        desired(ports=[{**HTTP, "published": None}]), service(ports=[HTTP]), False),
    "a new number": (desired(ports=[{**HTTP, "published": 8080}]), service(ports=[HTTP]),
                     True),
    "a port added": (desired(ports=[HTTP, {**HTTP, "target": 81, "published": None}]),
                     service(ports=[HTTP]), True),
    "ports removed": (desired(), service(ports=[HTTP]), True),
}


@pytest.mark.parametrize("case", list(PORTS))
def test_changes_ports(case: str) -> None:
    want, live, expected = PORTS[case]
    assert changes_ports(want, live) is expected


# -- an autoscaled service: its replicas are the autoscaler's --------------------------------

def autoscaled(doc: Resource) -> Resource:
    return {**doc, "spec": {**doc["spec"], "autoscale": {"min": 1, "max": 10, "targetCPU": 70}}}


def test_a_merge_keeps_an_autoscaled_services_live_replicas() -> None:
    live = autoscaled(service("web:1", replicas=4))
    merged = merge(live, autoscaled(service("web:1", replicas=2)))
    assert (merged.new["spec"]["replicas"], merged.changed, merged.spec_changed) == (4, False, False)
    assert kept_replicas(live, autoscaled(service(replicas=2))) == 4
    assert kept_replicas(live, autoscaled(service(replicas=4))) is None  # nothing overridden
    # taking autoscale away gives the document's replicas back
    assert merge(live, service("web:1", replicas=2)).new["spec"]["replicas"] == 2
    # adding it keeps what runs; the autoscaler brings it within bounds
    assert merge(service(replicas=12), autoscaled(service(replicas=2))).new["spec"]["replicas"] == 12


def test_the_autoscalers_write_changes_replicas_alone() -> None:
    live = autoscaled(service(replicas=2, status={"replicas": 2},
                              annotations={ann.PREVIOUS_SPEC: "{}"}))
    out = scaled(live, 5)
    assert out["spec"] == {**live["spec"], "replicas": 5}
    assert out["metadata"] == live["metadata"] and "status" not in out


def test_a_rollback_keeps_an_autoscaled_services_live_replicas() -> None:
    previous = autoscaled(service("web:1", replicas=2))["spec"]
    live = autoscaled(service("web:2", replicas=7, annotations={
        ann.PREVIOUS_SPEC: ann.previous_of(1, previous)}))
    back = rolled_back(live, "manual")
    assert (back["spec"]["template"]["image"], back["spec"]["replicas"]) == ("web:1", 7)
    # rolling back to a spec that did not autoscale brings its own replicas back
    fixed = service("web:1", replicas=2)["spec"]
    live = autoscaled(service("web:2", replicas=7, annotations={
        ann.PREVIOUS_SPEC: ann.previous_of(1, fixed)}))
    assert rolled_back(live, "manual")["spec"]["replicas"] == 2


def test_who_may_set_replicas() -> None:
    assert replicas_refusal(service()) is None
    assert replicas_refusal(autoscaled(service())) == (
        "service default/web is autoscaled (min 1, max 10): change or remove spec.autoscale "
        "to set replicas; nothing was written")
