"""What the benchmarks share: one etcd member (and, for process-based ones, a log folder)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from kubeless.cluster.etcd_server import EtcdCluster


def with_etcd(name: str, run: Callable[[str, Path], None]) -> None:
    """``run(endpoints, logdir)`` against a fresh single-member etcd; the processes'
    logs are kept (and their folder printed) only when it fails."""
    cluster = EtcdCluster(1).start()
    logdir = Path(tempfile.mkdtemp(prefix=f"kubeless-bench-{name}-"))
    try:
        run(cluster.endpoints, logdir)
    except BaseException:
        print(f"(process logs kept in {logdir})", flush=True)
        raise
    else:
        shutil.rmtree(logdir, ignore_errors=True)
    finally:
        cluster.stop()


def run_on_etcd(run: Callable[[str], Awaitable[None]]) -> None:
    """``await run(endpoints)`` against a fresh single-member etcd, stopped after."""
    cluster = EtcdCluster(1).start()
    try:
        asyncio.run(run(cluster.endpoints))
    finally:
        cluster.stop()
