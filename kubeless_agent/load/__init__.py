"""Load reports: what each task of a node uses, measured and published (``agents/<node>/load``).

    rates      pure: two samples of cumulative counters -> rates per second (CPU
               seconds -> cores busy, connections -> per second); a counter that went
               down started over: no rate from it that period
    procfs     /proc: the host's CPU and memory (/proc/stat, /proc/meminfo), and a
               process runtime task's (its session's utime+stime and RSS); pure parsers,
               small readers
    publisher  ``LoadPublisher``: every ``--load-period`` it asks each node's runtime for
               its running tasks' usage (``Runtime.usage``), the host for its own and the
               mesh for its connections per endpoint task, turns two samples into a
               report (``kubeless.api.load``), puts every local node's report in one
               transaction bound to the heartbeat lease, and sets the metrics

The report's format, and what makes a reader count it, is ``kubeless.api.load``'s;
each runtime measures its own tasks (docker: the engine's one-shot stats, through
``kubeless_agent.runtime.docker_stats``; process: ``procfs``; fake: a figure set by
the task's env or a test).
"""
