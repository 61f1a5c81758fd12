"""The control plane: a small reconcile framework and one package per controller.

Each controller has two halves (docs/ARCHITECTURE.md): a pure decision
function from a snapshot (and ``now``) to a list of operations (``ops``),
and an asyncio half that watches, queues keys and commits those operations
in etcd transactions fenced by the controller's leader key.
"""
