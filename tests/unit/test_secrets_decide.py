"""The secrets controller's decision as a pure function: which copies a node should hold."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controllers.secrets.decide import (DeleteCopy, Held, NodePlan, PutCopy, Ref, Source,
                                        needed, plan_node)
from kubeless.api.tasks import TASK_STATES, Task
from kubeless.cluster.sealing import key_id, new_private_key, public_text

Resource = dict[str, Any]
KEY = public_text(new_private_key())  # the node's current key
OLD_KEY = public_text(new_private_key())  # the key of the agent before a restart

DBPASS: Ref = ("Secret", "default", "dbpass")
APIKEY: Ref = ("Secret", "default", "apikey")
WEBCONF: Ref = ("Config", "default", "webconf")
SOURCES = {DBPASS: Source(*DBPASS, "uid-db", "c2VhbGVk"),
           APIKEY: Source(*APIKEY, "uid-api", "c2VhbGVk"),
           WEBCONF: Source(*WEBCONF, "uid-conf", "aGVsbG8=")}


def task(tid: str, *, node: str | None = "n1", state: str = "running",
         desired: str = "running", secrets: tuple[str, ...] = ("dbpass",),
         configs: tuple[str, ...] = ("webconf",), ns: str = "default") -> Task:
    template: Resource = {"image": "x:1",
                          "secrets": [{"source": s} for s in secrets],
                          "configs": [{"source": c, "target": f"/etc/{c}"} for c in configs]}
    return Task.of({"kind": "Task", "metadata": {"name": tid, "namespace": ns},
                    "spec": {"serviceName": "web", "desiredState": desired, "nodeName": node,
                             "template": template},
                    "status": {"state": state}})


def held(ref: Ref, *, uid: str | None = None, key: str | None = KEY, rev: int = 7) -> Held:
    source = SOURCES[ref]
    recipient = key_id(key) if key and ref[0] == "Secret" else ""
    return Held(uid if uid is not None else source.uid, recipient, rev)


def plan(tasks: list[Task], current: dict[Ref, Held] | None = None, *, exists: bool = True,
         public_key: str | None = KEY, sources: dict[Ref, Source] | None = None,
         can_open: bool = True) -> NodePlan:
    return plan_node("n1", exists=exists, public_key=public_key, tasks=tasks,
                     sources=SOURCES if sources is None else sources, held=current or {},
                     can_open=can_open)


def puts(p: NodePlan) -> dict[Ref, int]:
    return {put.ref: put.revision for put in p.puts}


def deletes(p: NodePlan) -> dict[Ref, str]:
    return {d.ref: d.why for d in p.deletes}


# -- which tasks need copies ------------------------------------------------------------

NEEDED: dict[str, tuple[Task, set[Ref]]] = {
    "running": (task("a"), {DBPASS, WEBCONF}),
    "assigned, not started yet": (task("a", state="assigned"), {DBPASS, WEBCONF}),
    "preparing (its agent waits for the copies)": (task("a", state="preparing"),
                                                   {DBPASS, WEBCONF}),
    "desired shutdown": (task("a", desired="shutdown"), set()),
    "desired remove": (task("a", desired="remove"), set()),
    "failed": (task("a", state="failed"), set()),
    "complete": (task("a", state="complete"), set()),
    "orphaned": (task("a", state="orphaned"), set()),
    "not assigned": (task("a", node=None, state="pending"), set()),
    "no references": (task("a", secrets=(), configs=()), set()),
    "another namespace": (task("a", ns="prod"), {("Secret", "prod", "dbpass"),
                                                 ("Config", "prod", "webconf")}),
}


@pytest.mark.parametrize("case", list(NEEDED))
def test_needed(case: str) -> None:
    t, want = NEEDED[case]
    assert needed([t]) == want


def test_a_template_that_does_not_read_gives_nothing_rather_than_failing() -> None:
    broken = Task.of({"kind": "Task", "metadata": {"name": "x", "namespace": "default"},
                      "spec": {"nodeName": "n1", "template": {"secrets": [{"target": "x"}]}},
                      "status": {"state": "running"}})
    assert needed([broken]) == set()


# -- what to write -----------------------------------------------------------------------

def test_missing_copies_are_put_for_a_task_there() -> None:
    p = plan([task("a")])
    assert puts(p) == {DBPASS: 0, WEBCONF: 0}
    assert not p.deletes and not p.undeliverable
    secret = next(put for put in p.puts if put.ref == DBPASS)
    assert secret.recipient == KEY and secret.source == SOURCES[DBPASS]
    assert next(put for put in p.puts if put.ref == WEBCONF).recipient == ""


def test_current_copies_are_left_alone() -> None:
    assert not plan([task("a"), task("b")], {DBPASS: held(DBPASS), WEBCONF: held(WEBCONF)})


def test_a_new_agent_key_reseals_secrets_but_not_configs() -> None:
    p = plan([task("a")], {DBPASS: held(DBPASS, key=OLD_KEY), WEBCONF: held(WEBCONF)})
    assert puts(p) == {DBPASS: 7} and not p.deletes


def test_a_new_source_uid_replaces_the_copy() -> None:
    p = plan([task("a")], {DBPASS: held(DBPASS, uid="uid-before"),
                           WEBCONF: held(WEBCONF, uid="uid-before")})
    assert puts(p) == {DBPASS: 7, WEBCONF: 7}


def test_an_unreadable_copy_is_rewritten() -> None:
    p = plan([task("a")], {DBPASS: Held("", "", 3), WEBCONF: held(WEBCONF)})
    assert puts(p) == {DBPASS: 3}


def test_copies_no_task_uses_are_deleted() -> None:
    current = {DBPASS: held(DBPASS), WEBCONF: held(WEBCONF), APIKEY: held(APIKEY)}
    p = plan([task("a", state="complete"), task("b", desired="shutdown")], current)
    assert deletes(p) == {DBPASS: "unused", WEBCONF: "unused", APIKEY: "unused"}
    assert not p.puts
    p = plan([task("a", configs=())], current)
    assert deletes(p) == {WEBCONF: "unused", APIKEY: "unused"}


def test_one_task_still_using_a_copy_keeps_it() -> None:
    current = {DBPASS: held(DBPASS), WEBCONF: held(WEBCONF)}
    assert not plan([task("old", state="failed"), task("new", state="starting")], current)


def test_tasks_of_other_nodes_do_not_count() -> None:
    current = {DBPASS: held(DBPASS), WEBCONF: held(WEBCONF)}
    assert deletes(plan([task("a", node="n2")], current)) == {DBPASS: "unused",
                                                              WEBCONF: "unused"}


def test_every_copy_of_a_node_that_is_gone_is_deleted() -> None:
    current = {DBPASS: held(DBPASS), WEBCONF: held(WEBCONF)}
    p = plan([task("a")], current, exists=False)
    assert deletes(p) == {DBPASS: "node gone", WEBCONF: "node gone"} and not p.puts


def test_a_copy_whose_source_is_gone_is_deleted_and_not_put_again() -> None:
    p = plan([task("a")], {DBPASS: held(DBPASS)}, sources={WEBCONF: SOURCES[WEBCONF]})
    assert deletes(p) == {DBPASS: "source gone"}
    assert puts(p) == {WEBCONF: 0}


def test_a_node_without_a_key_gets_configs_only_and_keeps_what_it_holds() -> None:
    p = plan([task("a")], public_key=None)
    assert puts(p) == {WEBCONF: 0} and not p.undeliverable
    assert not plan([task("a")], {DBPASS: held(DBPASS), WEBCONF: held(WEBCONF)},
                    public_key=None)
    # ... but what no task uses goes all the same
    p = plan([], {DBPASS: held(DBPASS)}, public_key=None)
    assert deletes(p) == {DBPASS: "unused"}


def test_without_the_cluster_key_secrets_are_undeliverable_and_configs_delivered() -> None:
    p = plan([task("a", secrets=("dbpass", "apikey"))], {APIKEY: held(APIKEY)},
             can_open=False)
    assert puts(p) == {WEBCONF: 0}
    assert [s.ref for s in p.undeliverable] == [DBPASS]  # apikey's copy is current


def test_a_source_is_never_shown_with_its_payload() -> None:
    assert "c2VhbGVk" not in repr(SOURCES[DBPASS]) + repr(plan([task("a")]))


# -- properties ------------------------------------------------------------------------------

REFS = [DBPASS, APIKEY, WEBCONF]


@settings(max_examples=200, deadline=None)
@given(states=st.lists(st.tuples(st.sampled_from(TASK_STATES),
                                 st.sampled_from(["running", "shutdown", "remove"]),
                                 st.sets(st.sampled_from(["dbpass", "apikey"])),
                                 st.booleans()), max_size=5),
       current=st.dictionaries(st.sampled_from(REFS),
                               st.tuples(st.booleans(), st.booleans()), max_size=3),
       public=st.sampled_from([KEY, None]))
def test_applying_the_plan_converges(states: list[tuple[str, str, set[str], bool]],
                                     current: dict[Ref, tuple[bool, bool]],
                                     public: str | None) -> None:
    """After the plan's puts and deletes, planning again changes nothing; and nothing
    is ever held that no task there uses."""
    tasks = [task(f"t{i}", state=s, desired=d, secrets=tuple(sorted(sec)),
                  configs=("webconf",) if conf else ())
             for i, (s, d, sec, conf) in enumerate(states)]
    holding = {ref: held(ref, uid=None if same_uid else "old",
                         key=KEY if same_key else OLD_KEY)
               for ref, (same_uid, same_key) in current.items()}
    p = plan(tasks, holding, public_key=public)
    for d in p.deletes:
        assert isinstance(d, DeleteCopy)
        del holding[d.ref]
    for put in p.puts:
        assert isinstance(put, PutCopy)
        holding[put.ref] = held(put.ref, key=put.recipient or None, rev=8)
    assert not plan(tasks, holding, public_key=public)
    want = needed(tasks)
    assert set(holding) <= want
    if public is not None:
        assert set(holding) == want


def test_transactions_stay_under_etcds_request_limit() -> None:
    from kubeless.store import Compare, Put

    from controllers.secrets.controller import MAX_TXN_BYTES, MAX_TXN_OPS, Write, batches

    def write(size: int) -> Write:
        return Write(Compare("k", "create", "==", 0), Put("k", b""), size,
                     DeleteCopy("n1", DBPASS, 0, "unused"))
    big = 700 * 1024  # a 500 KiB secret, sealed and in base64
    assert [len(b) for b in batches([write(big)] * 3)] == [1, 1, 1]
    assert [len(b) for b in batches([write(1000)] * (MAX_TXN_OPS + 1))] == [MAX_TXN_OPS, 1]
    assert [len(b) for b in batches([write(MAX_TXN_BYTES * 2), write(10)])] == [1, 1]
    assert list(batches([])) == []
