"""The autoscaler benchmark's synthetic cluster (bench.autoscaler) runs and decides."""

from __future__ import annotations

from bench.autoscaler import bench_decide, synthetic


def test_the_synthetic_cluster_reports_every_task_but_a_few() -> None:
    services, reports = synthetic(14, 3)
    assert len(services) == 14 and len(reports) == 100
    reported = sum(len(r.tasks) for r in reports)
    assert reported == 14 * 3 - 2  # services 3 and 10 each miss one report


def test_a_pass_decides_and_some_services_scale() -> None:
    seconds, changed = bench_decide(20, 3, passes=2)
    assert seconds > 0 and 0 < changed < 20
