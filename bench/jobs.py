"""A replicated job of 10,000 completions, at most 1,000 at once, on 200 hollow nodes.

Issue 18's figure: completions per second, from the job's creation to its run
``complete`` (the fake runtime exits 0 at once: ``KUBELESS_FAKE_EXIT=0``), so the
figure is the control plane's: replication starting tasks as others complete, the
scheduler placing them, the agents reporting. Prints the rate.
"""

from __future__ import annotations

import time

from bench.harness import run_on_etcd
from lab.hollow import HollowCluster, service
from lab.waiting import until

COMPLETIONS, MAX_CONCURRENT, NODES = 10_000, 1_000, 200


async def _run(endpoints: str) -> None:
    async with HollowCluster(endpoints, "/bench-jobs", lease_ttl=5, heartbeat_ttl=10) as c:
        for group in ("a", "b"):  # an agent's leave check reads its nodes in one txn (<= 128)
            await c.add_group(group, NODES // 2)
        svc = service("batch", COMPLETIONS, mode="replicated-job",
                      env={"KUBELESS_FAKE_EXIT": "0"}, job={"maxConcurrent": MAX_CONCURRENT})
        started = time.perf_counter()
        await c.apply(svc)

        async def complete() -> bool:
            job = (await c.status("batch")).get("job") or {}
            return job.get("state") == "complete"
        await until(complete, 900, f"{COMPLETIONS} completions", interval=0.5)
        took = time.perf_counter() - started
        print(f"replicated job: {COMPLETIONS} completions, maxConcurrent {MAX_CONCURRENT}, "
              f"{NODES} hollow nodes: {took:.1f} s, {COMPLETIONS / took:.0f} completions/s")


def main() -> None:
    run_on_etcd(_run)


if __name__ == "__main__":
    main()
