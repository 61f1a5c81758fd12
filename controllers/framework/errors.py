"""Errors of the controller framework.

    FrameworkError
    ├── QueueShutDown   the work queue was shut down (we closed it: workers just stop)
    └── NotLeader       our leadership is gone (lease lost, key deleted or taken over),
                        so a fenced write was refused or would be; stop acting, re-campaign

Store errors (``kubeless.store.Conflict``, ``Unavailable``...) pass through
unchanged: a conflict is retried with backoff by the runner.
"""

from __future__ import annotations


class FrameworkError(Exception):
    """Any failure raised by the framework itself."""


class QueueShutDown(FrameworkError):
    """``get`` on a work queue that was shut down."""


class NotLeader(FrameworkError):
    """This process does not (or no longer) lead the controller; its writes are fenced off."""
