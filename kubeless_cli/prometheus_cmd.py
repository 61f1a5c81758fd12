"""``kubeless prometheus targets``: Prometheus' scrape targets, read from the cluster.

Prints (or writes with ``-o FILE``, replaced atomically so Prometheus never
reads half a file) the file-based discovery list that
manifests/prometheus/prometheus.yml reads: one target per kubeless process
serving ``/metrics``, found where each says so (the agents' heartbeats, the
controllers' ``managers/<identity>`` keys; ``kubeless.cluster.metrics_endpoint``
holds the contract and the rule). Run it again (a cron job, a systemd timer)
when nodes come and go; Prometheus re-reads the file when it changes.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import click

from kubeless_cli.context import CliError, Context, pass_context


@click.group()
def prometheus() -> None:
    """Prometheus' view of the cluster (manifests/prometheus/ has the configuration)."""


@prometheus.command("targets")
@click.option("-o", "--output", metavar="FILE",
              help="Write the targets here (replaced atomically) instead of stdout.")
@pass_context
def targets(ctx: Context, output: str | None) -> None:
    """The scrape targets of every agent and controllers process, as file_sd JSON.

    Jobs: kubeless-agent, kubeless-controllers, and kubeless-manager (a manager
    node's one process: its agent and its controllers); label node: the node or
    controllers identity. A process started without --metrics-port is not listed.
    """
    from kubeless.cluster.metrics_endpoint import manager_metrics, targets as file_sd
    from kubeless.store.nodes import heartbeats

    async def run(rstore: Any) -> list[dict[str, Any]]:
        beats = await heartbeats(rstore)
        kvs, _ = await rstore.etcd.list_prefix(rstore.keys.root + "managers/")
        managers = {kv.key.rsplit("/", 1)[-1]: manager_metrics(kv.value) for kv in kvs}
        return file_sd(beats, managers)

    text = json.dumps(ctx.run(run), indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    write_atomically(Path(output), text)


def write_atomically(path: Path, text: str) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise CliError(f"{path}: no such directory {directory}")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise CliError(f"{path}: {err.strerror or err}") from None
