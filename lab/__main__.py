"""``python -m lab up | soak | failover | cleanup``: the multi-host cluster for a person.

    up       start the cluster (``--managers 3 --workers 2``; TLS unless ``--insecure``),
             print how to point the CLI at it (KUBELESS_ENDPOINTS, KUBELESS_CERT_PATH),
             stay in the foreground until Ctrl-C, then remove everything
    soak     random faults for SOAK_SECONDS (default 180) while services are scaled
             and updated; prints the faults and any invariant violation; exit 1 on any
    failover kill one etcd member (leader, follower, in turn) ``--rounds`` times under
             client load; print the time to a new leader and the failed calls
    cleanup  remove what runs whose owner died left behind (their recorded names only);
             ``--all`` also the runs of live owners (stop a stuck ``make cluster``)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from lab.cluster import system
from lab.cluster.harness import Cluster
from lab.cluster.system import SetupError


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lab",
                                description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("up", "soak"):
        s = sub.add_parser(name)
        s.add_argument("--managers", type=int, default=3)
        s.add_argument("--workers", type=int, default=2)
        s.add_argument("--heartbeat-ttl", type=int, default=5)
        s.add_argument("--insecure", action="store_true",
                       help="plain http:// etcd, no certificates (TLS is the default)")
    sub.choices["soak"].add_argument("--seconds", type=float,
                                     default=float(os.environ.get("SOAK_SECONDS", "180")))
    sub.choices["soak"].add_argument("--seed", type=int, default=None)
    f = sub.add_parser("failover")
    f.add_argument("--managers", type=int, default=3)
    f.add_argument("--rounds", type=int, default=10)
    c = sub.add_parser("cleanup")
    c.add_argument("--all", action="store_true", help="also runs whose owner still lives")
    return p.parse_args(argv)


def up(args: argparse.Namespace) -> int:
    cluster = Cluster(args.managers, args.workers, heartbeat_ttl=args.heartbeat_ttl,
                      lease_ttl=args.heartbeat_ttl, tls=not args.insecure, dashboard=True)
    print(f"starting {len(cluster.hosts)} hosts in {cluster.dir} ...", flush=True)
    started = time.monotonic()
    with cluster:
        print(f"cluster {cluster.name} is up in {time.monotonic() - started:.1f}s:\n")
        for h in cluster.hosts.values():
            parts = ", ".join(p for p in h.parts())
            print(f"  {h.name:4} {h.role:8} {h.address:14} netns {h.netns:16} {parts}")
            print(f"       DOCKER_HOST={h.docker_host}  logs {h.dir}/*.log")
        print(f"\ndashboard: {cluster.managers[0].dashboard_url} (every manager's "
              "controllers serve one on its address; read-only, no authentication)")
        print(f"\nPoint the CLI at it:\n\n{exports(cluster)}\n"
              f"    kubeless node ls\n    kubeless service create --name web --replicas 3 "
              f"kubeless-demo:latest\n\nEnter a host: nsenter --net=/var/run/netns/"
              f"{cluster.managers[0].netns} sh\n{join_line(cluster)}"
              "Ctrl-C stops and removes everything.",
              flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            while True:
                time.sleep(1)
                for line in cluster.crashed():
                    print(f"warning: {line}", file=sys.stderr)
                    cluster.hosts[line.split("/")[0]].killed.add(line.split()[0].split("/")[1])
        except KeyboardInterrupt:
            print("\nstopping ...", flush=True)
    print("removed everything")
    return 0


def exports(cluster: Cluster) -> str:
    """The shell lines that point the CLI at the cluster (as the admin on TLS)."""
    lines = [f"export KUBELESS_ENDPOINTS={cluster.endpoints}"]
    if cluster.tls is not None:
        lines.append(f"export KUBELESS_CERT_PATH={cluster.tls.admin}")
    else:
        lines.append("unset KUBELESS_CERT_PATH  # plain http:// etcd (--insecure): "
                     "anyone who reaches it can read and write everything")
    return "\n".join(f"    {line}" for line in lines)


def join_line(cluster: Cluster) -> str:
    """How another host joins through a manager's join endpoint (TLS only)."""
    token = cluster.tokens.get("worker")
    if token is None:
        return ""
    return (f"Join another host as a worker (managers: `kubeless join-token manager "
            f"--rotate`):\n    kubeless join --token {token} "
            f"{cluster.managers[0].join_address}\n")


def cleanup(args: argparse.Namespace) -> int:
    if args.all:
        runs = [r for r in system.records() if r.owner.pid != os.getpid()]
        for r in runs:
            r.owner.signal(signal.SIGTERM)
            system.purge(r)
        names = [r.name for r in runs]
    else:
        names = system.purge_stale()
    print(f"removed {', '.join(names)}" if names else "nothing left over")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    try:
        if args.cmd == "up":
            return up(args)
        if args.cmd == "soak":
            from lab.cluster.soak import soak

            return soak(args)
        if args.cmd == "failover":
            from lab.cluster.failover import failover

            return failover(args)
        return cleanup(args)
    except SetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
