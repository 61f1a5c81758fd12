"""A small simulated cluster for the replication and health decisions, and properties.

The simulation applies decisions to a store of plain Task dicts, plays the
scheduler (binds pending tasks to ready active nodes), the agents (report
running, or shutdown when told) and health, and checks that any starting
set of tasks converges: ``replicas`` running tasks, at most one task wanting
to run per slot at every step, and no operations once converged.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from controllers.health import drain, orphan_tasks, shutdown_stale
from controllers.ops import CreateTask, DeleteTask, Op, UpdateTask
from controllers.replication import reconcile_service
from kubeless.api.tasks import TASK_STATES, Task, effective_state
from tests.support.builders import NOW, Resource, ids, in_eu, node, service, task, with_effective


# ---- the simulated cluster -------------------------------------------------

class Cluster:
    def __init__(self, svc: Resource, tasks: list[Task], nodes: list[Resource]) -> None:
        self.service = svc
        self.nodes = nodes
        self.stored = {t.id: dict(t.stored) for t in tasks}
        self.reports: dict[str, Resource] = {}
        self.now = NOW
        self.new_id = ids()

    def snapshot(self) -> list[Task]:
        return [with_effective(t, self.reports.get(name)) for name, t in sorted(self.stored.items())]

    def apply(self, ops: list[Op]) -> None:
        for op in ops:
            assert "effectiveState" not in op.task  # type: ignore[union-attr]
            name = op.task["metadata"]["name"]  # type: ignore[union-attr]
            if isinstance(op, CreateTask):
                assert name not in self.stored
                self.stored[name] = op.task
            elif isinstance(op, UpdateTask):
                assert name in self.stored
                self.stored[name] = op.task
            elif isinstance(op, DeleteTask):
                del self.stored[name]
                self.reports.pop(name, None)

    def reconcile(self) -> list[Op]:
        return reconcile_service(self.service, self.snapshot(), self.nodes, self.now,
                                 new_id=self.new_id, eligible=in_eu).ops

    def health(self) -> list[Op]:
        ops: list[Op] = []
        for n in self.nodes:
            snap = self.snapshot()
            batch = orphan_tasks(n, snap, self.now) + shutdown_stale(n, snap) + drain(n, snap)
            self.apply(batch)
            ops += batch
        return ops

    def world(self) -> bool:
        """One step of scheduler and agents; whether anything changed."""
        changed = False
        usable = {n["metadata"]["name"]: n for n in self.nodes
                  if n["status"]["state"] == "ready" and n["spec"]["availability"] == "active"}
        ready = {n["metadata"]["name"] for n in self.nodes if n["status"]["state"] == "ready"}
        for name, t in sorted(self.stored.items()):
            state = effective_state(t, self.reports.get(name))
            desired = t["spec"].get("desiredState", "running")
            if state in ("new", "pending") and desired == "running":
                target = t["spec"].get("nodeName") or self.least_loaded(usable)
                if target in usable:
                    t["spec"]["nodeName"] = target
                    t["status"] = {**t["status"], "state": "assigned"}
                    self.reports.pop(name, None)
                    changed = True
            elif t["spec"].get("nodeName") in ready and state not in (
                    "complete", "shutdown", "failed", "rejected", "remove", "orphaned"):
                report = "running" if desired == "running" else "shutdown"
                if state_rank(report) > state_rank(state):
                    self.reports[name] = {"state": report, "timestamp": self.now,
                                          "nodeName": t["spec"]["nodeName"]}
                    changed = True
        return changed

    def least_loaded(self, usable: dict[str, Resource]) -> str | None:
        load = {n: 0 for n in usable}
        for t in self.stored.values():
            if t["spec"].get("nodeName") in load and t["spec"].get("desiredState") == "running":
                load[t["spec"]["nodeName"]] += 1
        return min(load, key=lambda n: (load[n], n)) if load else None

    def check_invariants(self) -> None:
        wanted = [t for t in self.snapshot() if t.wants_running]
        if self.service["spec"]["mode"] == "replicated":
            slots = [t.slot for t in wanted]
            assert len(slots) == len(set(slots)), "two tasks want to run in one slot"
            assert len(wanted) <= self.service["spec"]["replicas"]
        else:
            nodes = [t.node for t in wanted]
            assert len(nodes) == len(set(nodes)), "two tasks want to run on one node"

    def converge(self, rounds: int = 60) -> None:
        for _ in range(rounds):
            ops = self.reconcile()
            self.apply(ops)
            if ops:
                self.check_invariants()
            changed = bool(self.health()) | self.world()
            if not ops and not changed:
                again = reconcile_service(self.service, self.snapshot(), self.nodes, self.now,
                                          new_id=self.new_id, eligible=in_eu).requeue_after
                if again is None:
                    return
                self.now += again  # a restart delay is running: let it pass
                continue
            self.now += 1.0
        raise AssertionError("did not converge")


def state_rank(state: str) -> int:
    return TASK_STATES.index(state)


# ---- properties ------------------------------------------------------------

NODES = ["n1", "n2", "n3"]
random_task = st.builds(
    lambda slot, node_name, state, desired, version, ts: (slot, node_name, state, desired,
                                                          version, ts),
    st.integers(1, 6), st.sampled_from([None, *NODES]), st.sampled_from(TASK_STATES),
    st.sampled_from(["running", "shutdown", "remove"]), st.integers(0, 3),
    st.floats(NOW - 1000, NOW))


def build_tasks(specs: list[tuple[Any, ...]], mode: str) -> list[Task]:
    out = []
    for i, (slot, node_name, state, desired, version, ts) in enumerate(specs):
        if node_name is None and state not in ("new", "pending"):
            node_name = NODES[i % len(NODES)]  # bound states always carry a node
        if mode == "replicated" and state in ("new", "pending"):
            node_name = None  # the scheduler has not bound it yet
        if mode == "global":
            slot, node_name = (None, node_name or "n1") if i % 5 else (slot, node_name)
        out.append(task(f"t{i}", slot=slot, node=node_name, state=state, desired=desired,
                        version=version, ts=ts))
    return out


@settings(max_examples=150, deadline=None)
@given(replicas=st.integers(0, 5), specs=st.lists(random_task, max_size=12),
       delay=st.sampled_from(["0s", "3s"]), availability=st.sampled_from(["active", "drain", "pause"]))
def test_replicated_converges_from_any_state(replicas: int, specs: list[tuple[Any, ...]],
                                             delay: str, availability: str) -> None:
    nodes = [node("n1"), node("n2"), node("n3", availability=availability)]
    cluster = Cluster(service(replicas, restart={"delay": delay}), build_tasks(specs, "replicated"),
                      nodes)
    cluster.converge()
    snap = cluster.snapshot()
    running = [t for t in snap if t.wants_running and t.state == "running"]
    assert len(running) == replicas
    assert len({t.slot for t in running}) == replicas
    active = [t for t in snap if t.wants_running and not t.is_done]
    assert len(active) == replicas
    assert all(t.node != "n3" for t in running) or availability != "drain"
    assert cluster.reconcile() == []  # idempotent once converged


@settings(max_examples=150, deadline=None)
@given(specs=st.lists(random_task, max_size=12),
       n3=st.sampled_from([("ready", "active", "eu"), ("ready", "drain", "eu"),
                           ("ready", "active", "us"), ("down", "active", "eu"),
                           ("ready", "pause", "eu")]))
def test_global_converges_from_any_state(specs: list[tuple[Any, ...]],
                                         n3: tuple[str, str, str]) -> None:
    state, availability, zone = n3
    nodes = [node("n1"), node("n2"), node("n3", state=state, availability=availability, zone=zone)]
    cluster = Cluster(service(mode="global"), build_tasks(specs, "global"), nodes)
    cluster.converge()
    snap = cluster.snapshot()
    running = {}
    for t in snap:
        if t.wants_running and t.state == "running":
            assert t.node not in running
            running[t.node] = t
    assert {"n1", "n2"} <= set(running)
    if n3 == ("ready", "active", "eu"):
        assert "n3" in running
    elif availability != "pause":
        assert "n3" not in running
    assert cluster.reconcile() == []


def test_scale_down_then_up_in_the_simulation() -> None:
    cluster = Cluster(service(4), [], [node("n1"), node("n2")])
    cluster.converge()
    cluster.service = service(1)
    cluster.converge()
    assert sum(1 for t in cluster.snapshot()
               if t.wants_running and t.state == "running") == 1
    cluster.service = service(3)
    cluster.converge()
    running = [t for t in cluster.snapshot() if t.wants_running and t.state == "running"]
    assert sorted(t.slot or 0 for t in running) == [1, 2, 3] or len(running) == 3


def test_node_failure_and_return_in_the_simulation() -> None:
    nodes = [node("n1"), node("n2")]
    cluster = Cluster(service(2, restart={"delay": "5s"}), [], nodes)
    cluster.converge()
    nodes[1]["status"]["state"] = "down"
    cluster.converge()
    running = [t for t in cluster.snapshot() if t.wants_running and t.state == "running"]
    assert [t.node for t in running] == ["n1", "n1"]
    nodes[1]["status"]["state"] = "ready"
    cluster.converge()
    stale = [t for t in cluster.snapshot() if t.node == "n2"]
    assert stale and all(not t.wants_running for t in stale)


@settings(max_examples=60, deadline=None)
@given(replicas=st.integers(1, 4), attempts=st.integers(1, 4), history=st.integers(0, 3))
def test_crash_loop_stops_after_max_attempts(replicas: int, attempts: int, history: int) -> None:
    """Every task fails at once: each slot gets exactly 1 + maxAttempts tasks, however history is trimmed."""
    cluster = Cluster(service(replicas, restart={"maxAttempts": attempts}, history=history),
                      [], [node("n1")])
    created = 0
    for _ in range(5 * (attempts + 2)):
        ops = cluster.reconcile()
        created += sum(isinstance(op, CreateTask) for op in ops)
        cluster.apply(ops)
        for t in cluster.stored.values():
            if t["status"]["state"] == "pending":
                t["spec"]["nodeName"] = "n1"
                t["status"] = {"state": "failed", "timestamp": cluster.now}
        cluster.now += 1.0
    assert created == replicas * (1 + attempts)
