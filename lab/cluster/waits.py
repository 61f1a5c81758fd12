"""Reading and steering the test cluster through etcd, and waiting with deadlines.

What the e2e tests and the soak share: a store on the cluster's endpoints,
services written as ``kubeless apply`` writes them
(``kubeless.api.service_writes.merge`` keeps the rollout annotations), the
cluster as the control plane sees it (ready nodes, leaders, tasks with their
effective state) and as the engines see it (containers per host), and
``until``, which polls a condition until a deadline, never sleeping and hoping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from kubeless import store
from kubeless.api import validate
from kubeless.api.service_writes import merge
from kubeless.store.nodes import list_nodes
from kubeless.store.tasks import list_tasks

if TYPE_CHECKING:
    from lab.cluster.harness import Cluster, Host

Resource = dict[str, Any]
T = TypeVar("T")
CONTROLLERS = ("replication", "scheduler", "health", "rollout")
IMAGE = "kubeless-demo:latest"


async def etcd_leader(cluster: Cluster, members: list[Host] | None = None) -> Host | None:
    """The manager whose etcd every answering member of ``members`` follows, else None
    (no leader yet, or members disagree: an election is under way)."""
    by_id: dict[int, Host] = {}
    leaders: set[int] = set()
    for h in members if members is not None else cluster.managers:
        one = store.Etcd(store.parse_endpoints(h.etcd_url), call_timeout=0.5, retry_for=0.5,
                         tls=cluster.client_tls)
        try:
            status = await one.status()
        except store.StoreError:
            continue
        finally:
            await one.close()
        by_id[status.header.member_id] = h
        leaders.add(status.leader)
    return by_id.get(leaders.pop()) if len(leaders) == 1 else None


def connect(cluster: Cluster) -> store.ResourceStore:
    """A store as the admin (``admin:lab``) with every client's defaults."""
    return store.connect(cluster.endpoints, cluster.prefix, tls=cluster.client_tls)


async def with_store(cluster: Cluster, fn: Callable[[store.ResourceStore], Awaitable[T]]) -> T:
    """``fn`` on a store of its own (``connect``), closed after."""
    rs = connect(cluster)
    try:
        return await fn(rs)
    finally:
        await rs.etcd.close()


async def until(cond: Callable[[], Any], timeout: float, what: str,
                interval: float = 0.1) -> Any:
    """Poll ``cond`` (sync or async; store errors count as not yet) until truthy."""
    deadline = time.monotonic() + timeout
    last_err: Exception | None = None
    while True:
        try:
            result = cond()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
        except store.StoreError as err:
            last_err = err
        if time.monotonic() > deadline:
            extra = f" (last store error: {last_err})" if last_err else ""
            raise AssertionError(f"{what}: not met within {timeout:.0f}s{extra}")
        await asyncio.sleep(interval)


# -- the control plane's view ---------------------------------------------------------

async def ready_nodes(rs: store.ResourceStore) -> set[str]:
    nodes = (await list_nodes(rs)).items
    return {n["metadata"]["name"] for n in nodes
            if (n.get("status") or {}).get("state") == "ready"}


async def leaders(rs: store.ResourceStore) -> dict[str, str]:
    kvs, _ = await rs.etcd.list_prefix(rs.keys.root + "leaders/")
    return {kv.key.rsplit("/", 1)[-1]: kv.value.decode() for kv in kvs}


async def tasks(rs: store.ResourceStore, name: str | None = None,
                namespace: str = "default") -> list[Resource]:
    return (await list_tasks(rs, namespace if name else None, name)).items


def state(t: Resource) -> str:
    return str((t.get("status") or {}).get("state") or "new")


def desired(t: Resource) -> str:
    return str(t["spec"].get("desiredState") or "running")


def running(ts: list[Resource]) -> list[Resource]:
    """Tasks the control plane considers running (wanted running and running)."""
    return [t for t in ts if state(t) == "running" and desired(t) == "running"]


def where(ts: list[Resource]) -> dict[str, str]:
    """task id -> node, of the running tasks."""
    return {t["metadata"]["name"]: t["spec"].get("nodeName") for t in running(ts)}


async def cluster_ready(cluster: Cluster, timeout: float = 60.0) -> None:
    """Every node ready and every controller led by a manager whose controllers run."""
    rs = connect(cluster)
    try:
        want = set(cluster.hosts)
        await until(lambda: _has(ready_nodes(rs), want), timeout, f"nodes {sorted(want)} ready")
        live = {h.name for h in cluster.managers if h.running("controllers")}
        await until(lambda: _led_by(rs, live), timeout, f"controllers led by one of {live}")
    finally:
        await rs.etcd.close()


async def _has(found: Any, want: set[str]) -> bool:
    got: set[str] = await found
    return want <= got


async def _led_by(rs: store.ResourceStore, live: set[str]) -> bool:
    led = await leaders(rs)
    return all(led.get(c) in live for c in CONTROLLERS)


# -- services, as a user writes them ----------------------------------------------------

def service(name: str, replicas: int = 3, *, env: dict[str, str] | None = None,
            update: dict[str, Any] | None = None, constraints: list[str] | None = None,
            ) -> Resource:
    """A replicated demo service (httpd) that stops and restarts quickly."""
    spec: Resource = {
        "mode": "replicated", "replicas": replicas,
        "template": {"image": IMAGE, "env": env or {"VERSION": "1"}, "stopGracePeriod": "1s",
                     "restartPolicy": {"condition": "any", "delay": "1s"}},
        "update": {"parallelism": 1, "delay": "0s", "monitor": "1s", **(update or {})},
    }
    if constraints:
        spec["placement"] = {"constraints": constraints}
    return {"apiVersion": "kubeless.io/v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


async def apply(rs: store.ResourceStore, svc: Resource) -> Resource:
    """Create or change a Service as ``kubeless apply`` does (generation, previous spec)."""
    meta = svc["metadata"]
    for _ in range(20):
        live = await rs.get("Service", meta["name"], meta.get("namespace", "default"))
        if live is None:
            try:
                return await rs.create(validate(svc))
            except store.AlreadyExists:
                continue
        new, _, changed = merge(live, validate(svc))
        if not changed:
            return live
        new.pop("status", None)
        try:
            return await rs.update(new)
        except store.Conflict:
            continue
    raise AssertionError(f"could not apply {meta['name']}")


async def change(rs: store.ResourceStore, name: str, fn: Callable[[Resource], None],
                 namespace: str = "default") -> Resource:
    """Read a service, let ``fn`` change it in place, apply it."""
    live = await rs.get("Service", name, namespace)
    if live is None:
        raise AssertionError(f"service {name} not found")
    svc = {k: v for k, v in live.items() if k != "status"}
    fn(svc)
    return await apply(rs, svc)


async def scale(rs: store.ResourceStore, name: str, replicas: int) -> Resource:
    return await change(rs, name, lambda s: s["spec"].__setitem__("replicas", replicas))


async def delete(rs: store.ResourceStore, name: str, namespace: str = "default") -> None:
    try:
        await rs.delete("Service", name, namespace)
    except store.NotFound:
        pass


async def delete_all(cluster: Cluster) -> None:
    """Delete every Service (what a failed test left behind stops)."""
    rs = connect(cluster)
    try:
        for svc in (await rs.list("Service")).items:
            await delete(rs, svc["metadata"]["name"], svc["metadata"].get("namespace", "default"))
    finally:
        await rs.etcd.close()


async def status(rs: store.ResourceStore, name: str) -> Resource:
    svc = await rs.get("Service", name, "default")
    return (svc or {}).get("status") or {}


async def converged(rs: store.ResourceStore, name: str, replicas: int) -> list[Resource] | None:
    """The running tasks when exactly ``replicas`` run, one per slot, none other on its way."""
    ts = await tasks(rs, name)
    up = running(ts)
    pending = [t for t in ts if desired(t) == "running" and state(t) != "running"
               and state(t) not in ("complete", "shutdown", "failed", "rejected", "orphaned",
                                    "remove")]
    slots = {t["spec"].get("slot") for t in up}
    if len(up) == replicas and len(slots) == replicas and not pending:
        return up or [{}]
    return None


async def converged_off(rs: store.ResourceStore, name: str, replicas: int,
                        avoid: set[str]) -> bool:
    """Converged, and no running task is one of ``avoid`` (ids) or on a node in it."""
    found = await converged(rs, name, replicas) or []
    return bool(found) and not any(
        t["metadata"]["name"] in avoid or t["spec"].get("nodeName") in avoid
        for t in found if t)


async def wait_converged(rs: store.ResourceStore, name: str, replicas: int,
                         timeout: float = 60.0) -> list[Resource]:
    found: list[Resource] = await until(lambda: converged(rs, name, replicas), timeout,
                                        f"{replicas} tasks of {name} running")
    return [t for t in found if t]


# -- the engines' view ------------------------------------------------------------------

def containers(cluster: Cluster, running_only: bool = True) -> dict[str, list[dict[str, Any]]]:
    """host -> its engine's kubeless containers: {id, task, name, running, started, restarts}."""
    import docker.errors

    out: dict[str, list[dict[str, Any]]] = {}
    for h in cluster.hosts.values():
        client = cluster.docker(h)
        try:
            found = []
            for row in client.api.containers(all=not running_only,
                                             filters={"label": "kubeless.task.id"}):
                try:
                    attrs = client.api.inspect_container(row["Id"])
                except docker.errors.NotFound:
                    continue  # removed meanwhile
                st = attrs.get("State") or {}
                found.append({"id": row["Id"], "task": row["Labels"].get("kubeless.task.id"),
                              "name": row["Names"][0].lstrip("/"),
                              "running": bool(st.get("Running")), "started": st.get("StartedAt"),
                              "restarts": attrs.get("RestartCount", 0)})
            out[h.name] = sorted(found, key=lambda c: c["id"])
        finally:
            client.close()
    return out


def stray_containers(cluster: Cluster, ts: list[Resource]) -> list[str]:
    """Running containers no task wants running on that node (the old ones of a healed host)."""
    wanted = {(t["spec"].get("nodeName"), t["metadata"]["name"]) for t in ts
              if desired(t) == "running" and state(t) not in ("orphaned", "failed", "shutdown")}
    return [f"{host}:{c['name']}" for host, cs in containers(cluster).items() for c in cs
            if (host, c["task"]) not in wanted]
