"""Service specs as the controllers decide on them: validated and defaulted, once per version.

``ValidatedSpecs`` answers "this service's spec, checked and defaulted by
``kubeless.api.validate``" from the cluster view's cache (with the ports its
Routes expose on it), validating each spec once per version (the service's
and its routes', ``ClusterView.spec_version``: a reconcile per task event
must not re-run the schema) and forgetting a spec when it changes. Reading the cache is the
view's; what an invalid spec means (a status condition) is replication's.
"""

from __future__ import annotations

from typing import Any

from kubeless.api import ApiError, validate
from kubeless.store.resources import copy_data

from controllers.view import ClusterView

Resource = dict[str, Any]


class ValidatedSpecs:
    def __init__(self, view: ClusterView) -> None:
        self.view = view
        # Service spec key -> (resourceVersion, the validated spec or its ApiError).
        self._found: dict[str, tuple[Any, Resource | ApiError]] = {}
        view.on_service_change(self._forget)

    def _forget(self, key: str) -> None:
        self._found.pop(key, None)

    def get(self, ns: str, name: str) -> Resource | ApiError | None:
        """The service's spec (no status) checked and defaulted by ``validate``, with the
        cached resourceVersion; its ApiError when invalid; None when absent. Each call
        returns a fresh copy the caller may change."""
        stored = self.view.stored_service(ns, name)
        if stored is None:
            return None
        key = self.view.store.keys.spec("Service", name, ns)
        version = self.view.spec_version(ns, name)
        found = self._found.get(key)
        if found is None or found[0] != version:
            found = self._found[key] = (version, _checked(stored, version[0]))
        return found[1] if isinstance(found[1], ApiError) else copy_data(found[1])


def _checked(stored: Resource, version: Any) -> Resource | ApiError:
    try:
        doc = validate({k: v for k, v in stored.items() if k != "status"})
    except ApiError as err:
        return err
    doc["metadata"]["resourceVersion"] = version
    return doc
