"""The health controller: node liveness and availability turned into task changes.

This package holds the decision half (``decide``: pure functions from a node
and its tasks to operations). Watching heartbeat leases, deciding a node is
down, and committing the operations is the asyncio half's; replacing the
tasks health stops or orphans is replication's.
"""

from controllers.health.decide import drain, orphan_tasks, shutdown_stale

__all__ = ["drain", "orphan_tasks", "shutdown_stale"]
