"""The Runtime protocol's optional parts and the agent's error tree (no engine, no etcd)."""

from __future__ import annotations

from typing import Any

import pytest

from kubeless_agent import errors
from kubeless_agent.logs import LogServer
from kubeless_agent.node_status import advertise
from kubeless_agent.runtime import Runtime, RuntimeFailure, UnknownTask
from kubeless_agent.runtime.docker import DockerRuntime
from kubeless_agent.runtime.fake import FakeRuntime
from kubeless_agent.runtime.process import ProcessRuntime


class _Beats:
    def __init__(self) -> None:
        self.fields: dict[str, dict[str, Any]] = {}

    def update(self, node_id: str, fields: dict[str, Any]) -> None:
        self.fields.setdefault(node_id, {}).update(fields)


@pytest.mark.parametrize("runtime, supports_dns", [
    pytest.param(FakeRuntime, False, id="fake"),
    pytest.param(ProcessRuntime, False, id="process"),
    pytest.param(DockerRuntime, True, id="docker"),
])
def test_every_runtime_is_a_runtime_and_says_whether_its_tasks_take_cluster_dns(
        runtime: type[Runtime], supports_dns: bool) -> None:
    assert Runtime in runtime.__mro__  # inherits the defaults of what it lacks
    assert runtime.supports_cluster_dns is supports_dns


async def test_a_runtime_without_the_optional_parts_gets_the_defaults() -> None:
    fake = FakeRuntime()
    assert fake.engine_version() == "fake"  # its name
    assert fake.runtime_state() == {"state": "up", "message": ""}
    fake.watch_state(lambda state: pytest.fail("the state of fake never changes"))
    assert await fake.bridge_network() is None
    fake.use_cluster_dns("172.17.0.1")  # nothing to give it to: no error either
    with pytest.raises(UnknownTask):
        await fake.open_logs("t1")


def test_the_heartbeat_of_a_runtime_that_is_always_up() -> None:
    beats = _Beats()
    advertise(beats, "n1", FakeRuntime(), 4321)
    assert beats.fields == {"n1": {"logsPort": 4321, "runtimeState": "up",
                                   "runtimeMessage": "", "engineVersion": "fake"}}


def test_the_process_runtime_is_up_while_the_agent_is(tmp_path: Any) -> None:
    beats = _Beats()
    advertise(beats, "n1", ProcessRuntime("n1", state_dir=str(tmp_path)), None)
    status = beats.fields["n1"]
    assert (status["runtimeState"], status["runtimeMessage"]) == ("up", "")
    assert status["engineVersion"].startswith("process ") and "logsPort" not in status


async def test_the_log_server_skips_a_runtime_without_the_task(tmp_path: Any) -> None:
    process = ProcessRuntime("n2", state_dir=str(tmp_path))
    (tmp_path / "n2" / "t1").mkdir(parents=True)
    (tmp_path / "n2" / "t1" / "log").write_bytes(b"hello\n")
    server = LogServer({"n1": FakeRuntime(), "n2": process})
    lines = await server._open("t1", None, False)
    assert lines is not None and [line async for line in lines] == [b"hello\n"]
    assert await server._open("t2", None, False) is None


@pytest.mark.parametrize("error", [
    pytest.param(errors.RuntimeFailure("no image"), id="RuntimeFailure"),
    pytest.param(errors.UnknownTask("t1"), id="UnknownTask"),
    pytest.param(errors.NodeLeft("n1 left"), id="NodeLeft"),
])
def test_every_agent_error_is_an_agent_error(error: Exception) -> None:
    assert isinstance(error, errors.AgentError)


def test_unknown_task_is_still_a_lookup_error_and_the_protocol_re_exports_the_tree() -> None:
    assert issubclass(errors.UnknownTask, LookupError)
    assert (RuntimeFailure, UnknownTask) == (errors.RuntimeFailure, errors.UnknownTask)
