"""A real multi-host kubeless cluster on one machine, for end-to-end and soak tests.

    harness   Cluster: hosts as network namespaces on one switch, each with its own
              dockerd and agent; managers with an etcd member and the controllers;
              faults (kill, pause, cut off, restart) and cleanup
    system    commands, namespaced processes that die with us, purging a run's leftovers
    waits     the cluster as etcd and the engines see it; services; waiting with deadlines
    checker   background invariant checks (one running task per slot, floors, convergence)
    soak      random faults while services are scaled and updated
    __main__  python -m tests.cluster up | soak | cleanup
"""
