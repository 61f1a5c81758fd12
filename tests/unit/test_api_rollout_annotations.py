"""A Service's rollout annotations as pure functions (kubeless.api.rollout_annotations):
how each is read (a missing or unreadable value reads as absent) and which survive
a write that does not name them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubeless.api import rollout_annotations as ann

Resource = dict[str, Any]
SPEC_1: Resource = {"template": {"image": "web:1"}}
SPEC_2: Resource = {"template": {"image": "web:2"}}


def service(spec: Resource | None = None, *, generation: int | None = 2,
            annotations: dict[str, str] | None = None) -> Resource:
    meta: Resource = {"name": "web", "namespace": "default"}
    if generation is not None:
        meta["generation"] = generation
    if annotations is not None:
        meta["annotations"] = annotations
    return {"kind": "Service", "metadata": meta, "spec": spec or SPEC_2}


PREVIOUS: dict[str, tuple[dict[str, str] | None, tuple[int, Resource] | None]] = {
    "no annotations": (None, None),
    "kept": ({ann.PREVIOUS_SPEC: ann.previous_of(1, SPEC_1)}, (1, SPEC_1)),
    "empty value": ({ann.PREVIOUS_SPEC: ""}, None),
    "not JSON": ({ann.PREVIOUS_SPEC: "{nope"}, None),
    "JSON but not an object": ({ann.PREVIOUS_SPEC: "[1]"}, None),
    "no spec in it": ({ann.PREVIOUS_SPEC: json.dumps({"generation": 1})}, None),
    "a spec that is not an object": (
        {ann.PREVIOUS_SPEC: json.dumps({"generation": 1, "spec": "x"})}, None),
    "no generation in it reads as 0": (
        {ann.PREVIOUS_SPEC: json.dumps({"spec": SPEC_1})}, (0, SPEC_1)),
}


@pytest.mark.parametrize("case", list(PREVIOUS))
def test_previous_spec(case: str) -> None:
    annotations, want = PREVIOUS[case]
    assert ann.previous_spec(service(annotations=annotations)) == want


ROLLBACKS: dict[str, tuple[int | None, dict[str, str] | None, str | None]] = {
    "none": (2, None, None),
    "this generation": (3, {ann.ROLLBACK: ann.rollback_of(3, "manual")}, "manual"),
    "a stale generation means nothing": (4, {ann.ROLLBACK: ann.rollback_of(3, "manual")},
                                         None),
    "no reason reads as rollback": (3, {ann.ROLLBACK: json.dumps({"generation": 3})},
                                    "rollback"),
    "no generation in it": (3, {ann.ROLLBACK: json.dumps({"reason": "x"})}, None),
    "not JSON": (3, {ann.ROLLBACK: "rollback"}, None),
    "a service without a generation": (None, {ann.ROLLBACK: ann.rollback_of(3, "x")}, None),
}


@pytest.mark.parametrize("case", list(ROLLBACKS))
def test_rollback_reason(case: str) -> None:
    generation, annotations, want = ROLLBACKS[case]
    assert ann.rollback_reason(service(generation=generation, annotations=annotations)) == want


PAUSES: dict[str, tuple[dict[str, str] | None, bool, float]] = {
    "neither": (None, False, 0.0),
    "paused": ({ann.PAUSED: "true"}, True, 0.0),
    "paused is only the word true": ({ann.PAUSED: "yes"}, False, 0.0),
    "resumed": ({ann.RESUMED: "12.5"}, False, 12.5),
    "resumed, unreadable": ({ann.RESUMED: "soon"}, False, 0.0),
    "both": ({ann.PAUSED: "true", ann.RESUMED: "3"}, True, 3.0),
}


@pytest.mark.parametrize("case", list(PAUSES))
def test_paused_and_resumed_at(case: str) -> None:
    annotations, paused, resumed = PAUSES[case]
    svc = service(annotations=annotations)
    assert ann.is_paused(svc) is paused
    assert ann.resumed_at(svc) == resumed


def test_values_round_trip() -> None:
    svc = service(generation=5, annotations={
        ann.PREVIOUS_SPEC: ann.previous_of(4, SPEC_1), ann.ROLLBACK: ann.rollback_of(5, "r")})
    assert ann.previous_spec(svc) == (4, SPEC_1)
    assert ann.rollback_reason(svc) == "r"
    # the previous spec is written canonically: the same spec, the same string
    assert ann.previous_of(1, {"b": 1, "a": 2}) == ann.previous_of(1, {"a": 2, "b": 1})


KEEP: dict[str, tuple[dict[str, str] | None, dict[str, str] | None, bool, dict[str, str]]] = {
    # (live annotations, new annotations, spec changed, new annotations after)
    "nothing to keep, spec unchanged": (None, None, False, {}),
    "rollout annotations survive": (
        {ann.PAUSED: "true", ann.RESUMED: "1", "theirs": "y"}, {"mine": "x"}, False,
        {"mine": "x", ann.PAUSED: "true", ann.RESUMED: "1"}),
    "new's own value wins": ({ann.PAUSED: "true"}, {ann.PAUSED: "false"}, False,
                             {ann.PAUSED: "false"}),
    "a spec change remembers live's spec at live's generation": (
        None, None, True, {ann.PREVIOUS_SPEC: ann.previous_of(2, SPEC_1)}),
    "a spec change replaces the kept previous spec": (
        {ann.PREVIOUS_SPEC: ann.previous_of(1, SPEC_2)}, None, True,
        {ann.PREVIOUS_SPEC: ann.previous_of(2, SPEC_1)}),
    "no spec change keeps the previous spec": (
        {ann.PREVIOUS_SPEC: ann.previous_of(1, SPEC_2)}, None, False,
        {ann.PREVIOUS_SPEC: ann.previous_of(1, SPEC_2)}),
    "an explicit previous spec (a rollback's) is not overwritten": (
        {ann.PREVIOUS_SPEC: ann.previous_of(1, SPEC_2)},
        {ann.PREVIOUS_SPEC: ann.previous_of(7, SPEC_2)}, True,
        {ann.PREVIOUS_SPEC: ann.previous_of(7, SPEC_2)}),
    "new repeating live's previous spec is no rollback": (
        {ann.PREVIOUS_SPEC: ann.previous_of(1, SPEC_2)},
        {ann.PREVIOUS_SPEC: ann.previous_of(1, SPEC_2)}, True,
        {ann.PREVIOUS_SPEC: ann.previous_of(2, SPEC_1)}),
}


@pytest.mark.parametrize("case", list(KEEP))
def test_keep_previous(case: str) -> None:
    live_ann, new_ann, spec_changed, want = KEEP[case]
    live = service(SPEC_1, annotations=live_ann)
    new = service(SPEC_2, annotations=new_ann)
    ann.keep_previous(new, live, spec_changed)
    assert new["metadata"].get("annotations", {}) == want


def test_keep_previous_on_a_spec_change_and_keep_rollout_annotations() -> None:
    live = service(SPEC_1, annotations={ann.PAUSED: "true"})
    new = service(SPEC_2, annotations={"mine": "x"})
    ann.keep_previous(new, live, spec_changed=True)
    got = new["metadata"]["annotations"]
    assert got["mine"] == "x" and got[ann.PAUSED] == "true"
    assert json.loads(got[ann.PREVIOUS_SPEC])["spec"]["template"]["image"] == "web:1"


def test_keep_previous_of_a_live_service_without_a_generation_counts_it_first() -> None:
    live = service(SPEC_1, generation=None)
    new = service(SPEC_2)
    ann.keep_previous(new, live, spec_changed=True)
    assert ann.previous_spec(new) == (1, SPEC_1)
