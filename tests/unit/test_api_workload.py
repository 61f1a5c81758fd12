"""What a Service's mode means: which fields belong to which mode, and the shared accessors."""

from __future__ import annotations

from typing import Any

import pytest

from kubeless.api import ApiError, validate, workload


def service(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "kubeless.io/v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"template": {"image": "busybox"}, **spec}}


def messages(doc: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, path))}: {text}" for path, text in workload.problems(doc)]


@pytest.mark.parametrize("spec, expected", [
    ({"mode": "global", "schedule": "* * * * *"},
     ["spec.schedule: only a job has a schedule (mode replicated-job or global-job), "
      "not mode global"]),
    ({"maxConcurrent": 2},
     ["spec.maxConcurrent: only mode replicated-job has maxConcurrent, not mode replicated"]),
    ({"mode": "global-job", "maxConcurrent": 2},
     ["spec.maxConcurrent: only mode replicated-job has maxConcurrent, not mode global-job"]),
    ({"mode": "replicated-job", "autoscale": {"max": 3, "targetCPU": 50}},
     ["spec.autoscale: only mode replicated autoscales, not mode replicated-job"]),
    ({"autoscale": {"min": 4, "max": 3, "targetCPU": 50}}, ["spec.autoscale.min: 4 is above max (3)"]),
    ({"autoscale": {"max": 3}},
     ["spec.autoscale: needs targetCPU or targetConnections: what to scale on"]),
    ({"mode": "global", "placement": {"rebalance": True}},
     ["spec.placement.rebalance: only mode replicated rebalances, not mode global"]),
    ({"mode": "replicated-job", "replicas": 6, "maxConcurrent": 2, "runHistoryLimit": 1}, []),
    ({"autoscale": {"max": 3, "targetConnections": 5}, "placement": {"rebalance": True}}, []),
])
def test_fields_belong_to_their_mode(spec: dict[str, Any], expected: list[str]) -> None:
    assert messages(service(**spec)) == expected


def test_validation_reports_them_with_every_other_violation() -> None:
    with pytest.raises(ApiError) as err:
        validate(service(mode="global", maxConcurrent=1, replicas=-1))
    text = str(err.value)
    assert "spec.maxConcurrent: only mode replicated-job" in text
    assert "spec.replicas" in text


def test_autoscale_defaults_fill_min_and_delay_only() -> None:
    doc = validate(service(autoscale={"max": 10, "targetCPU": 70}))
    assert doc["spec"]["autoscale"] == {"min": 1, "max": 10, "targetCPU": 70,
                                        "scaleDownDelay": "5m"}
    assert "rebalance" not in doc["spec"]["placement"]
    assert "maxConcurrent" not in doc["spec"]


@pytest.mark.parametrize("spec, concurrent", [
    ({"mode": "replicated-job", "replicas": 6, "maxConcurrent": 2}, 2),
    ({"mode": "replicated-job", "replicas": 6}, 6),
    ({"mode": "replicated-job", "replicas": 6, "maxConcurrent": 0}, 6),
    ({"mode": "replicated-job", "replicas": 3, "maxConcurrent": 10}, 3),
])
def test_max_concurrent(spec: dict[str, Any], concurrent: int) -> None:
    assert workload.max_concurrent(service(**spec)) == concurrent


def test_accessors_read_the_mode() -> None:
    assert workload.mode_of(service()) == "replicated"
    assert workload.is_job(service(mode="global-job")) and workload.is_global(service(mode="global-job"))
    assert not workload.is_job(service(mode="global"))
    assert workload.autoscale_of(service(autoscale={"max": 2})) == {"max": 2}
    assert workload.autoscale_of(service(mode="global", autoscale={"max": 2})) is None
    assert workload.rebalances(service(placement={"rebalance": True}))
    assert not workload.rebalances(service(placement={}))
    assert workload.run_history_limit(service()) == 3
    assert workload.run_history_limit(service(runHistoryLimit=0)) == 0
