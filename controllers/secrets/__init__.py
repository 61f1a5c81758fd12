"""The secrets controller: delivers copies of secrets and configs to the nodes that use them.

``decide`` is the decision half (pure: a node's tasks, its advertised key, the
sources and the copies it holds -> the copies to put and delete);
``controller`` the asyncio half (events -> nodes, sealing each secret to the
node's key, fenced writes), which also gives a cluster record made before
secrets its ``secretsKey``. Agents read their own copies; nothing else writes them.
"""

from controllers.secrets.decide import Held, NodePlan, PutCopy, DeleteCopy, Source, plan_node

__all__ = ["DeleteCopy", "Held", "NodePlan", "PutCopy", "Source", "plan_node"]
