"""The autoscaler: sets a Service's ``spec.replicas`` from its tasks' load (``spec.autoscale``).

``decide`` is the HPA rule (pure); ``controller`` watches, keeps each service's
recommendation history while it leads, writes the replicas (through the one
guarded Service write path) and ``status.autoscale``.
"""
