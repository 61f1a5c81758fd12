"""A real multi-host kubeless cluster on one machine: for a person, the e2e tests and the soak.

    harness   Cluster: hosts as network namespaces on one switch, each with its own
              dockerd and agent; managers with an etcd member and the controllers;
              faults (kill, pause, cut off, restart) and cleanup
    system    commands, namespaced processes that die with us, purging a run's leftovers
    waits     the cluster as etcd and the engines see it; services; waiting with deadlines
    checker   background invariant checks (one running task per slot, floors, convergence)
    soak      random faults while services are scaled and updated
    failover  what losing one etcd member costs clients

Run from the command line as ``python -m lab`` (lab/__main__.py).
"""
