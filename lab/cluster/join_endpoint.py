"""A harness manager's join endpoint (Swarm's port 2377), run as one of its parts.

    python -m lab.cluster.join_endpoint --state-dir DIR --node-name m1 --address ADDR
        --endpoints https://... --prefix /kubeless/ [--port 2377]

The harness writes every identity itself (as kubeadm's ``certs`` phase does),
lays each manager's directory out as a state dir (``ca.key``, ``ca.crt``,
``tls/``, ``manager-tls/``), and writes the cluster record with its join tokens
(``lab.cluster.tls.write_record``). This process then serves the join endpoint
exactly as a node made by ``kubeless init`` does (``kubeless_cli.node_process.
serve_join``, presenting the manager identity to etcd), so ``kubeless join
--token T ADDR:2377`` works against the harness. It stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace

from kubeless import store
from kubeless.cluster import NodeState, StateDir
from kubeless.cluster.bootstrap import read_record
from kubeless.cluster.state import DEFAULT_JOIN_PORT
from kubeless.log_setup import configure_logging
from kubeless_cli.node_process import manager_tls, serve_join, stop_on_signals


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lab.cluster.join_endpoint")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--node-name", required=True)
    p.add_argument("--address", required=True)
    p.add_argument("--endpoints", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--port", type=int, default=DEFAULT_JOIN_PORT)
    return p.parse_args(argv)


async def _cluster_id(node: NodeState, state: StateDir) -> str:
    rstore = store.connect(node.endpoints, node.prefix, retry_for=10,
                           tls=manager_tls(node, state))
    try:
        found = await read_record(rstore)
    finally:
        await rstore.etcd.close()
    if found is None:
        raise SystemExit(f"error: {node.endpoints} (prefix {node.prefix}) holds no cluster "
                         "record: the harness writes it before starting the join endpoints")
    return found.record.id


async def serve(args: argparse.Namespace) -> None:
    state = StateDir(args.state_dir)
    node = NodeState("", args.node_name, "manager", args.endpoints, args.prefix, "docker",
                     args.address, join_port=args.port)
    node = replace(node, cluster_id=await _cluster_id(node, state))
    stop = asyncio.Event()
    with stop_on_signals(stop):
        serving = asyncio.create_task(serve_join(node, state))
        await asyncio.wait([serving, asyncio.create_task(stop.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    configure_logging("INFO")
    asyncio.run(serve(_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
