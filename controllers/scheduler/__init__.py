"""The scheduler: placement of pending tasks on nodes.

Decision half (pure, no etcd, no asyncio), on ``kubeless.api.tasks.Task``:
``request`` reads what a task asks of and takes from a node, ``nodeinfo`` keeps per-node aggregates,
``filters`` judges nodes and explains rejections, ``spread`` chooses among
passing nodes under placement preferences, and ``plan`` ties them into
``plan_placements`` (bench/scheduler.py times it). The asyncio
half (watching, writing assignments) lives beside these and only calls
``plan_placements``. Placement constraints are parsed and matched by
kubeless.api.constraints, the one grammar validation, the CLI and global
services use too.
"""

from controllers.scheduler.filters import (
    DEFAULT_PIPELINE,
    AvailabilityFilter,
    ConstraintFilter,
    CPUFilter,
    Filter,
    HostPortFilter,
    MaxReplicasFilter,
    MemoryFilter,
    Pipeline,
    ReadyFilter,
    ResourceFilter,
)
from controllers.scheduler.nodeinfo import NodeInfo, build_nodeinfos
from controllers.scheduler.plan import Assignment, Plan, Unschedulable, plan_placements
from controllers.scheduler.request import TaskRequest, Usage, task_key

__all__ = [
    "DEFAULT_PIPELINE", "Assignment", "AvailabilityFilter", "CPUFilter",
    "ConstraintFilter", "Filter", "HostPortFilter", "MaxReplicasFilter", "MemoryFilter",
    "NodeInfo", "Pipeline", "Plan", "ReadyFilter", "ResourceFilter", "TaskRequest",
    "Unschedulable", "Usage", "build_nodeinfos", "plan_placements", "task_key",
]
