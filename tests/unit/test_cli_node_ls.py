"""``node ls`` as docker prints it: columns, the ``*`` on this CLI's node, the engine version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubeless_cli.node_cmds import NODE_COLUMNS, local_node_id, node_rows
from kubeless_cli.printers import format_rows


def node(name: str, *, role: str = "worker", state: str | None = "ready",
         engine: str | None = "20.10.24+dfsg1", availability: str = "active") -> dict[str, Any]:
    status: dict[str, Any] = {"hostname": f"host-{name}"}
    if state:
        status["state"] = state
    if engine:
        status["engineVersion"] = engine
    return {"metadata": {"name": name}, "spec": {"role": role, "availability": availability},
            "status": status}


def test_the_columns_are_dockers() -> None:
    assert NODE_COLUMNS == ["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS",
                            "ENGINE VERSION"]


ROWS: dict[str, tuple[list[dict[str, Any]], str | None, list[list[str]]]] = {
    "this node marked, a manager leading, engine versions": (
        [node("w1", engine="process 0.1.0"), node("m1", role="manager")], "m1",
        [["m1 *", "host-m1", "Ready", "Active", "Leader", "20.10.24+dfsg1"],
         ["w1", "host-w1", "Ready", "Active", "", "process 0.1.0"]]),
    "no node of this host: none marked": (
        [node("m1", role="manager"), node("w1")], None,
        [["m1", "host-m1", "Ready", "Active", "Leader", "20.10.24+dfsg1"],
         ["w1", "host-w1", "Ready", "Active", "", "20.10.24+dfsg1"]]),
    "a down node: no heartbeat, no engine version": (
        [node("w1", state=None, engine=None, availability="drain")], "w1",
        [["w1 *", "host-w1", "Down", "Drain", "", ""]]),
}


@pytest.mark.parametrize("case", list(ROWS))
def test_rows(case: str) -> None:
    nodes, me, wanted = ROWS[case]
    assert node_rows(nodes, {"m1"}, {"m1"}, me) == wanted


def test_the_table() -> None:
    table = format_rows(NODE_COLUMNS, node_rows([node("m1", role="manager"), node("w1")],
                                                {"m1"}, {"m1"}, "m1"))
    lines = table.splitlines()
    assert lines[0].split("  ")[0] == "ID" and lines[0].rstrip().endswith("ENGINE VERSION")
    assert lines[1].startswith("m1 *") and lines[1].rstrip().endswith("20.10.24+dfsg1")
    assert lines[1].index("Leader") == lines[0].index("MANAGER STATUS")


def _state_dir(path: Path, node_id: str | None) -> str:
    path.mkdir()
    if node_id:
        (path / "node-id").write_text(node_id + "\n")
    return str(path)


# (KUBELESS_NODE, node-id of KUBELESS_STATE_DIR, of kubeless up's dir, the id wanted)
LOCAL: dict[str, tuple[str | None, str | None, str | None, str | None]] = {
    "the state dir's node": (None, "n2", None, "n2"),
    "kubeless up's node": (None, None, "n3", "n3"),
    "the state dir first": (None, "n2", "n3", "n2"),
    "a state dir of another cluster is passed over": (None, "gone", "n3", "n3"),
    "no state dir: nothing marked": (None, None, None, None),
    "KUBELESS_NODE says so": ("n1", "n2", None, "n1"),
}


@pytest.mark.parametrize("case", list(LOCAL))
def test_the_local_node(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env, state, up, wanted = LOCAL[case]
    if env:
        monkeypatch.setenv("KUBELESS_NODE", env)
    else:
        monkeypatch.delenv("KUBELESS_NODE", raising=False)
    monkeypatch.setenv("KUBELESS_STATE_DIR", _state_dir(tmp_path / "state", state))
    monkeypatch.setenv("KUBELESS_UP_DIR", _state_dir(tmp_path / "up", up))
    assert local_node_id({"n1", "n2", "n3"}) == wanted
