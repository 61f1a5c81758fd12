"""The asyncio framework every controller runs on.

    clock      time, injected (MonotonicClock; FakeClock for tests)
    workqueue  de-duplicating work queue with per-key exponential backoff
    leader     leader election on a lease-bound key, and the fence compare
    applier    controllers.ops -> fenced, batched etcd transactions
    runner     Controller (what a controller implements) and ControllerRunner
    metrics    prometheus metrics, labelled by controller
    errors     QueueShutDown, NotLeader

A controller subclasses ``Controller``; ``python -m controllers`` hands the
ones it runs to one ``ControllerRunner``.
"""

from .applier import Applier, ApplyResult, BatchResult, task_needs_assignment
from .clock import Clock, FakeClock, MonotonicClock
from .errors import FrameworkError, NotLeader, QueueShutDown
from .leader import LeaderElector
from .runner import (Controller, ControllerContext, ControllerRunner, ControllerStats,
                     InformerSpec, ResourceDecoder, plain_decode)
from .workqueue import ExponentialBackoff, WorkQueue

__all__ = [
    "Applier", "ApplyResult", "BatchResult", "Clock", "Controller", "ControllerContext",
    "ControllerRunner", "ControllerStats", "ExponentialBackoff", "FakeClock", "FrameworkError",
    "InformerSpec", "LeaderElector", "MonotonicClock", "NotLeader", "QueueShutDown",
    "ResourceDecoder", "WorkQueue", "plain_decode", "task_needs_assignment",
]
