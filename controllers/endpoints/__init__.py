"""The endpoints controller: keeps ``endpoints/<ns>/<service>`` current for meshes and DNS.

``decide`` is the decision half (pure: a service, its tasks and their nodes
-> the endpoints document, and what to write); ``controller`` the asyncio
half (events -> services, fenced writes). Agents read the keys (routing
mesh, DNS); nothing else writes them.
"""

from controllers.endpoints.decide import desired_endpoints, endpoints_op

__all__ = ["desired_endpoints", "endpoints_op"]
