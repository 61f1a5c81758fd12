"""How large a Service may be: its tasks must fit with their assignment in one etcd request."""

from __future__ import annotations

from typing import Any

import pytest

from kubeless.api import InvalidResource, validate
from kubeless.api.limits import MAX_TASK_PAYLOAD_BYTES, task_payload_bytes


def doc(env_bytes: int, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "kubeless.io/v1", "kind": "Service",
            "metadata": {"name": "web", **meta},
            "spec": {"template": {"image": "web:1", "env": {"X": "x" * env_bytes}}}}


CASES = {
    "small": (doc(10), True),
    "just under": (doc(MAX_TASK_PAYLOAD_BYTES - 200), True),
    "just over": (doc(MAX_TASK_PAYLOAD_BYTES), False),
    "labels count (tasks copy them)": (doc(MAX_TASK_PAYLOAD_BYTES - 200,
                                           labels={"a": "y" * 300}), False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_service_size(case: str) -> None:
    service, fits = CASES[case]
    if fits:
        validate(service)
        return
    with pytest.raises(InvalidResource) as err:
        validate(service)
    assert any(v.path == "spec" and "too large to schedule" in v.message
               for v in err.value.violations)


def test_the_limit_leaves_room_for_task_and_assignment_in_etcds_default() -> None:
    assert 2 * MAX_TASK_PAYLOAD_BYTES < 1536 * 1024
    assert task_payload_bytes(doc(1000)) > 1000
