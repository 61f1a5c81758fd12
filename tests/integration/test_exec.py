"""`kubeless exec` into process-runtime tasks, through a joined node's agent over TLS.

A TLS etcd (conftest's ``tls_etcd``) and an in-process agent (process runtime) whose
state dir holds a node identity with server usage (``tls/``, as ``join`` writes it):
it serves logs and exec over TLS only. The real ``kubeless`` runs each command with
an ``admin:`` identity; a node's or manager's identity is refused (403). ``-t`` runs
once with the CLI on a pseudo-terminal of the test's (python's ``pty``).
"""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys
import termios
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubeless import store
from kubeless.store import TlsConfig
from kubeless_agent import running_agent
from kubeless_agent.main import AgentProcess
from tests.support.agents import joined_agent_config
from tests.support.cli import run_cli, tls_flags
from tests.support.cli_errors import assert_one_error_line
from tests.support.etcd_server import EtcdCluster
from tests.support.workloads import ROOT, assign, reaches, task, unique_node

pytestmark = pytest.mark.integration
LONG = ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]


@pytest.fixture(scope="module")
def admin(tls_etcd: EtcdCluster) -> Path:
    return tls_etcd.identity("admin:exec-user")


@pytest.fixture
async def tls_store(tls_etcd: EtcdCluster, admin: Path,
                    prefix: str) -> AsyncIterator[store.ResourceStore]:
    s = store.connect(tls_etcd.endpoints, prefix,
                      tls=TlsConfig(admin / "ca.pem", admin / "cert.pem", admin / "key.pem"))
    yield s
    await s.etcd.close()


@pytest.fixture
async def agent(tls_etcd: EtcdCluster, prefix: str, tmp_path: Path) -> AsyncIterator[AgentProcess]:
    node = unique_node("ex")
    config = joined_agent_config(tls_etcd, prefix, node, tmp_path / "state",
                                 runtime_options=(("state_dir", str(tmp_path / "proc")),))
    async with running_agent(config) as a:
        yield a
        for worker in a.workers.values():  # leave no process behind
            for rec in list(worker.records.values()):
                if rec.task is not None:
                    await a.runtimes[node].remove(rec.task)


async def started(rs: store.ResourceStore, node: str, service: str = "shell",
                  **template: Any) -> dict[str, Any]:
    t = task(service, 1, node, command=template.pop("command", LONG),
             workdir=template.pop("workdir", "/tmp"), **template)
    await assign(rs, t)
    await reaches(rs, t, template.get("state", "running"))
    return t


def kubeless(tls_etcd: EtcdCluster, prefix: str, identity: Path, *args: str,
             stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(tls_etcd.endpoints, prefix, *tls_flags(identity), *args, stdin=stdin)


async def test_exec_streams_exit_code_stdin_and_task_env(
        agent: AgentProcess, tls_etcd: EtcdCluster, prefix: str, admin: Path,
        tls_store: store.ResourceStore) -> None:
    node = agent.node_ids[0]
    t = await started(tls_store, node, env={"GREETING": "hello"})
    tid = t["metadata"]["name"]

    res = await asyncio.to_thread(kubeless, tls_etcd, prefix, admin, "exec", "shell.1", "--",
                                  "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (res.returncode, res.stdout, res.stderr) == (3, "out\n", "err\n")

    res = await asyncio.to_thread(kubeless, tls_etcd, prefix, admin, "exec", tid[:8], "sh",
                                  "-c", 'echo "$GREETING $KUBELESS_TASK_ID"; pwd')
    assert (res.returncode, res.stdout) == (0, f"hello {tid}\n/tmp\n"), res.stderr

    lines = "".join(f"line {i}\n" for i in range(2000))  # more than one frame
    res = await asyncio.to_thread(kubeless, tls_etcd, prefix, admin, "exec", "-i", tid,
                                  "--", "cat", stdin=lines)
    assert (res.returncode, res.stdout == lines) == (0, True), res.stderr
    res = await asyncio.to_thread(kubeless, tls_etcd, prefix, admin, "exec", tid, "--", "cat",
                                  stdin="ignored without -i")
    assert (res.returncode, res.stdout) == (0, "")


async def test_commands_that_cannot_run_and_tasks_that_do_not(
        agent: AgentProcess, tls_etcd: EtcdCluster, prefix: str, admin: Path,
        tls_store: store.ResourceStore) -> None:
    node = agent.node_ids[0]
    await started(tls_store, node)
    res = await asyncio.to_thread(kubeless, tls_etcd, prefix, admin, "exec", "shell.1", "--",
                                  "no-such-command")
    assert res.returncode == 127
    assert 'exec: "no-such-command": executable file not found' in res.stderr
    res = await asyncio.to_thread(kubeless, tls_etcd, prefix, admin, "exec", "shell.1", "--",
                                  "/etc/hostname")
    assert res.returncode == 126, res.stderr

    done = await started(tls_store, node, "once", command=["true"], state="complete")
    res = await asyncio.to_thread(kubeless, tls_etcd, prefix, admin, "exec", "once.1", "true")
    assert_one_error_line(res, f"task once.1 ({done['metadata']['name']}) is not running: "
                               "complete")
    res = await asyncio.to_thread(kubeless, tls_etcd, prefix, admin, "exec", "nope.1", "true")
    assert_one_error_line(res, "no such task: nope.1 (namespace default)")
    res = await asyncio.to_thread(kubeless, tls_etcd, prefix, admin, "exec", "shell.1")
    assert res.returncode == 2 and "Missing argument" in res.stderr


@pytest.mark.parametrize("who", ["node:ex-intruder", "manager:ex-manager"])
async def test_only_an_admin_identity_may_exec(
        agent: AgentProcess, tls_etcd: EtcdCluster, prefix: str, admin: Path,
        tls_store: store.ResourceStore, tmp_path: Path, who: str) -> None:
    """etcd reads need an identity that may read tasks: read with the admin's, present
    ``who``'s certificate to the node (the CLI uses one identity for both, so the test
    gives etcd the admin's CA and key pair under TLS without auth)."""
    await started(tls_store, agent.node_ids[0])
    other = tls_etcd.identity(who)
    res = await asyncio.to_thread(kubeless, tls_etcd, prefix, other, "exec", "shell.1", "true")
    assert_one_error_line(res, f"exec needs an admin identity; {who} may not run commands "
                               "in tasks")


async def test_tty_through_a_pseudo_terminal(
        agent: AgentProcess, tls_etcd: EtcdCluster, prefix: str, admin: Path,
        tls_store: store.ResourceStore) -> None:
    """The CLI on a terminal of ours: -it puts it in raw mode, the command sees a terminal
    of its own, the session ends (no hang) and our terminal's mode is restored."""
    await started(tls_store, agent.node_ids[0])
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    env = {**os.environ, "KUBELESS_ENDPOINTS": tls_etcd.endpoints, "KUBELESS_PREFIX": prefix,
           "PYTHONPATH": str(ROOT)}
    env.pop("KUBELESS_NAMESPACE", None)
    proc = subprocess.Popen([sys.executable, "-m", "kubeless_cli.main", *tls_flags(admin),
                             "exec", "-it", "shell.1", "--", "sh", "-c",
                             "test -t 0 && echo on-a-tty; read answer; echo got $answer; "
                             "exit 5"],
                            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT,
                            start_new_session=True)
    try:
        out = await asyncio.to_thread(_converse, master, b"on-a-tty", b"yes\r", proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    after = termios.tcgetattr(slave)
    os.close(master)
    os.close(slave)
    assert b"got yes" in out, out
    assert proc.returncode == 5
    assert after == before


def _converse(master: int, prompt: bytes, answer: bytes, proc: subprocess.Popen[bytes],
              timeout: float = 60.0) -> bytes:
    """Read the terminal until ``prompt``, type ``answer``, read until the CLI exits."""
    import select

    out = b""
    sent = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            out += os.read(master, 65536)
        if not sent and prompt in out:
            os.write(master, answer)
            sent = True
        if proc.poll() is not None and not ready:
            return out
    raise AssertionError(f"the -t session did not end: {out!r}")
