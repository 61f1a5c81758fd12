"""The replication controller: how many tasks a service has, and which.

This package holds the decision half (pure functions on Task models and plain
data, no etcd, no asyncio): ``decide`` is the entry point; ``slots`` (replicated services),
``global_mode`` (global ones), ``restart`` (the restart policy), ``history``
(task history trimming) and ``facts`` (sort keys, building operations)
do the parts. The asyncio half (informers, work queue, applier) lives
elsewhere and calls ``reconcile_service`` per service key.
"""

from controllers.replication.decide import reconcile_service, service_status
from controllers.replication.facts import Decision
from controllers.replication.restart import HISTORY_ANNOTATION, RestartPolicy

__all__ = ["HISTORY_ANNOTATION", "Decision", "RestartPolicy", "reconcile_service",
           "service_status"]
