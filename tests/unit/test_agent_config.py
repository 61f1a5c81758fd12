"""The agent's config from the node state init, join and up stored (``from_node_state``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kubeless.cluster import NodeState, StateDir
from kubeless_agent.main import AgentConfig

NODE = NodeState(cluster_id="c1", node_id="n1", role="worker", endpoints="http://10.0.0.1:2379",
                 prefix="/k", runtime="docker", advertise_addr="10.0.0.2",
                 labels={"zone": "eu"}, metrics_port=9100)
STATE = StateDir("/var/lib/kubeless-test")


@pytest.fixture(autouse=True)
def no_mesh_mode_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The defaults a user gets: not the session's KUBELESS_MESH_MODE (tests/conftest.py)."""
    monkeypatch.delenv("KUBELESS_MESH_MODE", raising=False)


def test_the_stored_fields_are_the_agents() -> None:
    config = AgentConfig.from_node_state(NODE)
    assert config == AgentConfig(endpoints="http://10.0.0.1:2379", prefix="/k",
                                 runtime="docker", node_name="n1", advertise_addr="10.0.0.2",
                                 labels=(("zone", "eu"),), metrics_port=9100, role="worker",
                                 mesh_mode="auto")


@pytest.mark.parametrize("case, node, state, role, expected", [
    ("no agent options: the agent's defaults", NODE, None, None,
     {"mesh_bind": None, "dns_addrs": None, "drain_period": 2.0, "runtime_options": (),
      "mesh_mode": "auto"}),
    ("mesh mode kept as given", replace(NODE, agent_options={"mesh_mode": "userspace"}), None,
     None, {"mesh_mode": "userspace"}),
    ("mesh bind kept as given", replace(NODE, agent_options={"mesh_bind": "0.0.0.0"}), None,
     None, {"mesh_bind": "0.0.0.0"}),
    ("dns none: no DNS", replace(NODE, agent_options={"dns_addr": "none"}), None, None,
     {"dns_addrs": ()}),
    ("dns addresses listed", replace(NODE, agent_options={"dns_addr": "10.0.0.2:53,127.0.0.1"}),
     None, None, {"dns_addrs": ("10.0.0.2:53", "127.0.0.1")}),
    ("drain period parsed", replace(NODE, agent_options={"drain_period": "500ms"}), None, None,
     {"drain_period": 0.5}),
    ("load period parsed", replace(NODE, agent_options={"load_period": "30s"}), None, None,
     {"load_period": 30.0}),
    ("process runtime: files under the state dir", replace(NODE, runtime="process"), STATE,
     None, {"runtime_options": (("state_dir", "/var/lib/kubeless-test/process"),)}),
    ("docker runtime: no runtime options", NODE, STATE, None, {"runtime_options": ()}),
    ("a role given wins over the stored one", NODE, None, "manager", {"role": "manager"}),
    ("the stored role otherwise", replace(NODE, role="manager"), None, None,
     {"role": "manager"}),
])
def test_agent_options(case: str, node: NodeState, state: StateDir | None, role: str | None,
                       expected: dict[str, Any]) -> None:
    config = AgentConfig.from_node_state(node, state, role=role)
    assert {k: getattr(config, k) for k in expected} == expected, case


def test_a_bad_stored_option_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="drain-period"):
        AgentConfig.from_node_state(replace(NODE, agent_options={"drain_period": "soon"}))


def test_the_load_period_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubeless_agent.main import parse_args

    monkeypatch.delenv("KUBELESS_LOAD_PERIOD", raising=False)
    assert parse_args([]).load_period == 10.0
    assert parse_args(["--load-period", "0"]).load_period == 0.0  # off
    assert parse_args(["--load-period", "500ms"]).load_period == 0.5
    monkeypatch.setenv("KUBELESS_LOAD_PERIOD", "2s")
    assert parse_args([]).load_period == 2.0
    assert AgentConfig.from_node_state(NODE).load_period == 2.0  # node.yaml says none
    for bad in ("soon", "-1s", "inf"):
        with pytest.raises(SystemExit):
            parse_args(["--load-period", bad])


def test_state_dir_path(tmp_path: Path) -> None:
    config = AgentConfig.from_node_state(replace(NODE, runtime="process"), StateDir(tmp_path))
    assert dict(config.runtime_options) == {"state_dir": str(tmp_path / "process")}


def test_the_mesh_mode_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubeless_agent.main import parse_args

    monkeypatch.delenv("KUBELESS_MESH_MODE", raising=False)
    assert parse_args([]).mesh_mode == "auto"  # the command: kernel where nft works
    monkeypatch.setenv("KUBELESS_MESH_MODE", "userspace")  # as the tests' conftest sets it
    assert parse_args([]).mesh_mode == "userspace"
    assert AgentConfig.from_node_state(NODE).mesh_mode == "userspace"  # node.yaml says none
    assert parse_args(["--mesh-mode", "userspace"]).mesh_mode == "userspace"
    assert AgentConfig().mesh_mode == "userspace"  # embedded agents (tests) unless asked
    stored = replace(NODE, agent_options={"mesh_mode": "kernel"})
    assert AgentConfig.from_node_state(stored).mesh_mode == "kernel"
    with pytest.raises(SystemExit):
        parse_args(["--mesh-mode", "ipvs"])
