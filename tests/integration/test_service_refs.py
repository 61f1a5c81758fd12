"""Services referring to Secrets and Configs, against the session's TLS+auth etcd.

A reference to a Secret or Config that its namespace does not hold is refused with
nothing written, by every Service writer (kubeless.store.services), and atomically:
the commit compares that what was read still exists. A Secret the same transaction
writes counts as there. The CLI's flags write the references as docker's do.
The Secrets and Configs are minimal stored documents put at their keys, as the
``secret create`` of this issue would (their value is not this file's concern).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeless import store
from kubeless.api import validate
from kubeless.api.errors import MissingReference
from kubeless.store import Put
from kubeless.store import services as writes
from kubeless.store.services import Attempt
from tests.support.cli import Run, write

pytestmark = pytest.mark.integration
Resource = dict[str, Any]


def stored_doc(kind: str, name: str, ns: str = "default") -> Resource:
    return {"apiVersion": "kubeless.io/v1", "kind": kind,
            "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}"},
            "spec": {"size": 7}}


async def put_ref(rstore: store.ResourceStore, kind: str, name: str, ns: str = "default") -> None:
    key = rstore.keys.spec(kind, name, ns)
    await rstore.etcd.txn([], [Put(key, yaml.safe_dump(stored_doc(kind, name, ns)).encode())])


async def remove_ref(rstore: store.ResourceStore, kind: str, name: str, ns: str = "default") -> None:
    await rstore.etcd.txn([], [store.Delete(rstore.keys.spec(kind, name, ns))])


def service(name: str, template: str = "{}", ns: str = "default", **spec: Any) -> Resource:
    return validate({"apiVersion": "kubeless.io/v1", "kind": "Service",
                     "metadata": {"name": name, "namespace": ns},
                     "spec": {"template": {"image": "web:1", **yaml.safe_load(template)}, **spec}})


USES_DBPASS = "{secrets: [{source: dbpass}], configs: [{source: webconf, target: /etc/web.conf}]}"


# -- the write path -------------------------------------------------------------------------

async def test_create_refuses_a_missing_reference_and_writes_nothing(
        rstore: store.ResourceStore) -> None:
    await put_ref(rstore, "Config", "webconf")
    with pytest.raises(MissingReference) as err:
        await writes.create_service(rstore, service("web", USES_DBPASS))
    assert str(err.value) == ('service "web" refers to secret "dbpass", which does not exist '
                              "in namespace default")
    assert await rstore.get("Service", "web", "default") is None
    await put_ref(rstore, "Secret", "dbpass", ns="other")  # another namespace's is no use
    with pytest.raises(MissingReference):
        await writes.create_service(rstore, service("web", USES_DBPASS))
    await put_ref(rstore, "Secret", "dbpass")
    created = await writes.create_service(rstore, service("web", USES_DBPASS))
    assert created["spec"]["template"]["secrets"] == [{"source": "dbpass"}]


async def test_update_and_rollback_check_the_references_they_write(
        rstore: store.ResourceStore) -> None:
    await put_ref(rstore, "Secret", "dbpass")
    await writes.create_service(rstore, service("web", "{secrets: [{source: dbpass}]}"))

    def rotate(to: str) -> Any:
        def change(doc: Resource) -> Resource:
            template = {**doc["spec"]["template"], "secrets": [{"source": to, "target": "dbpass"}]}
            return validate({**doc, "spec": {**doc["spec"], "template": template}})
        return change

    with pytest.raises(MissingReference, match='"dbpass.v2", which does not exist'):
        await writes.update_service(rstore, "web", "default", rotate("dbpass.v2"))
    await put_ref(rstore, "Secret", "dbpass.v2")
    assert await writes.update_service(rstore, "web", "default", rotate("dbpass.v2"))
    await remove_ref(rstore, "Secret", "dbpass")  # no longer used by the current spec
    live = await rstore.get("Service", "web", "default")
    assert live is not None
    with pytest.raises(MissingReference, match='refers to secret "dbpass", which does not'):
        await writes.roll_back_service(rstore, live, "manual")
    after = await rstore.get("Service", "web", "default")
    assert after is not None and after["metadata"]["resourceVersion"] == \
        live["metadata"]["resourceVersion"]


@pytest.mark.parametrize("ports", [[], [{"target": 80}]], ids=["one-commit", "guarded"])
async def test_a_reference_removed_between_read_and_commit_refuses_the_write(
        rstore: store.ResourceStore, ports: list[Resource]) -> None:
    """The commit compares that each Secret read still exists: removing it while the
    write is being planned refuses the write (no retry, nothing written)."""
    await put_ref(rstore, "Secret", "dbpass")
    doc = service("web", "{secrets: [{source: dbpass}]}", ports=ports)

    async def plan(attempt: Attempt) -> Resource:
        new = attempt.txn.create(await attempt.checked(doc, None))
        await remove_ref(rstore, "Secret", "dbpass")  # another client, meanwhile
        return new

    with pytest.raises(MissingReference):
        await writes.write_services(rstore, plan, what="creating the service")
    assert await rstore.get("Service", "web", "default") is None


async def test_a_secret_written_in_the_same_commit_counts_as_there(
        rstore: store.ResourceStore) -> None:
    """apply -f of a file holding a Secret and the Service using it: one transaction."""
    secret, config = stored_doc("Secret", "dbpass"), stored_doc("Config", "webconf")
    svc = service("web", USES_DBPASS)

    async def plan(attempt: Attempt) -> None:
        await attempt.references([secret, svc, config])
        for doc in (secret, config, svc):
            attempt.txn.create(doc)

    await writes.write_services(rstore, plan, what="applying")
    assert await rstore.get("Service", "web", "default") is not None
    got, _ = await rstore.etcd.get(rstore.keys.spec("Secret", "dbpass", "default"))
    assert got is not None


# -- the CLI ----------------------------------------------------------------------------------

def refused(res: Any, message: str) -> None:
    assert res.returncode == 1, res
    assert res.stderr == f"error: {message}; nothing was written\n"


async def test_cli_refuses_missing_references_in_one_line(
        kubeless: Run, rstore: store.ResourceStore, tmp_path: Path) -> None:
    run = lambda *args: asyncio.to_thread(kubeless, *args)  # noqa: E731
    missing = 'service "web" refers to secret "dbpass", which does not exist in namespace default'
    refused(await run("service", "create", "-d", "--name", "web", "--secret", "dbpass", "web:1"),
            missing)
    manifest = write(tmp_path / "web.yaml", yaml.safe_dump(
        {"apiVersion": "kubeless.io/v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"template": {"image": "web:1", "secrets": [{"source": "dbpass"}]}}}))
    refused(await run("apply", "-f", str(manifest)), missing)
    refused(await run("apply", "--dry-run", "-f", str(manifest)), missing)
    assert (await rstore.list("Service")).items == []
    await put_ref(rstore, "Secret", "dbpass")
    res = await run("apply", "-f", str(manifest))
    assert res.returncode == 0 and res.stdout == "service/web created\n", res
    res = await run("service", "update", "-d", "--config-add", "source=webconf,target=/etc/web.conf",
                    "web")
    refused(res, 'service "web" refers to config "webconf", which does not exist in '
                 "namespace default")


async def test_cli_create_update_and_rotation_write_docker_s_references(
        kubeless: Run, rstore: store.ResourceStore) -> None:
    run = lambda *args: asyncio.to_thread(kubeless, *args)  # noqa: E731
    for kind, name in (("Secret", "dbpass"), ("Secret", "dbpass.v2"), ("Config", "webconf")):
        await put_ref(rstore, kind, name)
    res = await run("service", "create", "-d", "--name", "web", "--secret", "dbpass",
                    "--secret", "source=dbpass,target=/etc/db.pass,uid=1000,mode=0400",
                    "--config", "src=webconf,dst=/etc/web.conf", "web:1")
    assert res.returncode == 0, res.stderr

    async def template() -> Resource:
        res = await run("service", "inspect", "web")
        assert res.returncode == 0, res.stderr
        out: Resource = json.loads(res.stdout)[0]["spec"]["template"]
        return out

    assert (await template())["secrets"] == [
        {"source": "dbpass"},
        {"source": "dbpass", "target": "/etc/db.pass", "uid": "1000", "mode": 0o400}]
    assert (await template())["configs"] == [{"source": "webconf", "target": "/etc/web.conf"}]
    res = await run("service", "update", "-d", "--secret-rm", "dbpass",
                    "--secret-add", "source=dbpass.v2,target=dbpass", "web")
    assert res.returncode == 0, res.stderr
    assert (await template())["secrets"] == [{"source": "dbpass.v2", "target": "dbpass"}]
    res = await run("service", "update", "-d", "--config-rm", "webconf", "web")
    assert res.returncode == 0, res.stderr
    assert "configs" not in await template()
    res = await run("service", "update", "-d", "--secret-add", "source=dbpass,mode=644", "web")
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res
    assert "invalid --secret-add 'source=dbpass,mode=644': mode '644' must be octal" in res.stderr
