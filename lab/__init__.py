"""Try and measure a kubeless cluster on one machine: a tool for people, not shipped.

    cluster    a real multi-host cluster in network namespaces (each host its own
               dockerd and agent; managers with etcd and the controllers), fault
               injection, the soak and the etcd failover measurement
    hollow     a whole control plane on hollow nodes (fake runtime) in one event loop
    synthetic  Node and Task dicts shaped as the scheduler receives them
    waiting    waiting for a condition with a deadline, or watching one hold
    __main__   python -m lab up | soak | failover | cleanup (make cluster, make soak)

The tests and the benchmarks build on it; it imports neither.
"""
