"""The scheduler: placement of pending tasks on nodes.

Decision half (pure, no etcd, no asyncio): ``constraints`` parses and
matches placement constraints, ``request`` reads what a task asks of and
takes from a node, ``nodeinfo`` keeps per-node aggregates, ``filters``
judges nodes and explains rejections, ``spread`` chooses among passing
nodes under placement preferences, and ``plan`` ties them into
``plan_placements``. ``bench`` times it on synthetic data. The asyncio
half (watching, writing assignments) lives beside these and only calls
``plan_placements``.
"""

from controllers.scheduler.constraints import (
    Constraint,
    matches,
    node_attribute,
    parse_constraint,
    parse_constraints,
)
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
from controllers.scheduler.request import TaskRequest, Usage, occupies, task_key

__all__ = [
    "DEFAULT_PIPELINE", "Assignment", "AvailabilityFilter", "CPUFilter", "Constraint",
    "ConstraintFilter", "Filter", "HostPortFilter", "MaxReplicasFilter", "MemoryFilter",
    "NodeInfo", "Pipeline", "Plan", "ReadyFilter", "ResourceFilter", "TaskRequest",
    "Unschedulable", "Usage", "build_nodeinfos", "matches", "node_attribute", "occupies",
    "parse_constraint", "parse_constraints", "plan_placements", "task_key",
]
