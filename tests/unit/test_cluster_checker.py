"""The e2e checker's slot invariant, as a pure function (lab/cluster/checker.py)."""

from __future__ import annotations

from typing import Any

from lab.cluster.checker import doubled_slots


def t(tid: str, slot: int, state: str = "running", desired: str = "running",
      replaces: str | None = None, svc: str = "web") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": tid, "namespace": "default"}
    if replaces:
        meta["annotations"] = {"kubeless.io/replaces": replaces}
    return {"metadata": meta, "status": {"state": state},
            "spec": {"serviceName": svc, "slot": slot, "nodeName": "n", "desiredState": desired,
                     "specVersion": 1}}


def test_one_running_task_per_slot_is_fine() -> None:
    assert doubled_slots([t("a", 1), t("b", 2), t("c", 1, state="shutdown")]) == {}


def test_two_running_tasks_in_one_slot_are_flagged() -> None:
    found = doubled_slots([t("a", 1), t("b", 1), t("c", 1, svc="other")])
    assert list(found) == [("default", "web", 1)]
    assert len(found[("default", "web", 1)]) == 2


def test_a_start_first_pair_is_allowed_but_not_a_third() -> None:
    assert doubled_slots([t("a", 1), t("b", 1, replaces="a")]) == {}
    assert doubled_slots([t("a", 1), t("b", 1, replaces="a"), t("c", 1)])


def test_a_task_told_to_stop_counts_only_as_an_overlap() -> None:
    ts = [t("a", 1, desired="shutdown"), t("b", 1)]
    assert doubled_slots(ts) == {}
    assert doubled_slots(ts, stopping=True)
