"""Errors of the node agent.

    AgentError
    ├── RuntimeFailure   a runtime call failed (an image that cannot be pulled, a
    │                    port in use, an engine that does not answer): the task's
    │                    error, never the agent's. The worker reports the task
    │                    ``rejected`` with the message and goes on.
    ├── UnknownTask      (also a LookupError) the runtime holds no such task, e.g.
    │                    ``open_logs`` on a node that never ran it: the log server
    │                    asks the next runtime, then answers 404.
    ├── NotRunning       the runtime holds the task but it runs nothing now (``exec``
    │                    into a task that ended or has not started): the exec
    │                    endpoint answers 409.
    ├── CopyUnusable     a node's copy of a Secret or Config is there but does not
    │                    open (sealed to another key or name, damaged): its task
    │                    waits in ``preparing`` with the message until it is replaced.
    └── NodeLeft         the agent was started for a node that left the cluster
                         (``kubeless node leave``): terminal, the agent exits 1
                         until ``kubeless node rm`` and a new join.

Docker SDK and OS exceptions become ``RuntimeFailure`` at the runtime's boundary,
chained with ``from``. etcd's are the store's (``kubeless.store.errors``): the agent
rides those out, retrying. Not here: ``main._Stopping``, the signal that ends the
agent's task group when asked to stop, which never leaves ``AgentProcess.run``.
"""

from __future__ import annotations


class AgentError(Exception):
    """Any failure the agent itself names."""


class RuntimeFailure(AgentError):
    """A runtime call failed; the message is reported as the task's error."""


class UnknownTask(AgentError, LookupError):
    """The runtime holds no task (container, process) of that id."""


class NotRunning(AgentError):
    """The task is this runtime's but its process or container is not running."""


class CopyUnusable(AgentError):
    """A copy that does not open; the message names it, never its value."""


class NodeLeft(AgentError):
    """An agent was started for a node that left the cluster."""
