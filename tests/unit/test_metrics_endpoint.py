"""Where processes are scraped, and the file_sd targets made from what they advertise."""

from __future__ import annotations

from typing import Any

import pytest

from kubeless.cluster.metrics_endpoint import (manager_metrics, manager_value, scrape_address,
                                               targets)


@pytest.mark.parametrize("bind,advertise,want", [
    ("127.0.0.1", "10.0.0.5", "127.0.0.1:9101"),
    ("0.0.0.0", "10.0.0.5", "10.0.0.5:9101"),
    ("::", "fd00::5", "[fd00::5]:9101"),
    ("10.0.0.7", "10.0.0.5", "10.0.0.7:9101"),
])
def test_scrape_address(bind: str, advertise: str, want: str) -> None:
    assert scrape_address(bind, 9101, advertise) == want


def test_manager_value_round_trips_and_reads_a_bare_identity() -> None:
    assert manager_metrics(manager_value("m1", "127.0.0.1:9101")) == "127.0.0.1:9101"
    assert manager_metrics(manager_value("m1", None)) is None
    assert manager_metrics(b"m1") is None  # an older process: the identity alone


CASES: dict[str, tuple[dict[str, Any], dict[str, str | None], list[dict[str, Any]]]] = {
    # name: (heartbeats, managers, target groups)
    "nothing advertised": ({"w1": {}}, {"m1": None}, []),
    "an agent and a controllers process": (
        {"w1": {"metrics": "10.0.0.2:9102"}}, {"m1": "10.0.0.1:9101"},
        [{"targets": ["10.0.0.1:9101"], "labels": {"job": "kubeless-controllers", "node": "m1"}},
         {"targets": ["10.0.0.2:9102"], "labels": {"job": "kubeless-agent", "node": "w1"}}]),
    "a manager node's one process": (
        {"m1": {"metrics": "127.0.0.1:9101"}}, {"m1": "127.0.0.1:9101"},
        [{"targets": ["127.0.0.1:9101"], "labels": {"job": "kubeless-manager", "node": "m1"}}]),
    "hollow nodes share their process": (
        {"h-0": {"metrics": "127.0.0.1:9102"}, "h-1": {"metrics": "127.0.0.1:9102"}}, {},
        [{"targets": ["127.0.0.1:9102"], "labels": {"job": "kubeless-agent", "node": "h-0"}}]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_targets(case: str) -> None:
    beats, managers, want = CASES[case]
    assert targets(beats, managers) == want
