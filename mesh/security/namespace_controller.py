"""The namespace controller: a ``istio-ca-root-cert`` ConfigMap in every namespace.

Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/serviceregistry/kube/controller/namespacecontroller.go#L62-L174
and ``InsertDataToConfigMap``
(https://github.com/istio/istio/blob/1.19.0/security/pkg/k8s/configutil.go#L33-L59).
Sidecars mount this ConfigMap to verify istiod's certificate before they have one of their own.
The controller reconciles on namespace events, on edits or deletion of the ConfigMap itself, and
when the root changes. System namespaces are skipped, as the injector skips them
(https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/initializer.go#L38-L42).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mesh.kube.client import ConflictError, KubeClient

log = logging.getLogger(__name__)

CONFIGMAP_NAME = "istio-ca-root-cert"
DATA_KEY = "root-cert.pem"
LABELS = {"istio.io/config": "true"}
IGNORED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "local-path-storage"})


class NamespaceController:
    def __init__(self, client: KubeClient, root_pem: Callable[[], str]):
        self.client = client
        self.root_pem = root_pem
        self.namespaces = client.informer("namespaces")
        self.configmaps = client.informer("configmaps")
        self._reconciling = False

    def run(self) -> None:
        self.namespaces.add_event_handler(on_add=self._on_namespace, on_update=lambda old, new: self._on_namespace(new))
        self.configmaps.add_event_handler(on_update=lambda old, new: self._on_configmap(new),
                                          on_delete=self._on_configmap)

    def root_changed(self) -> None:
        for ns in self.namespaces.list():
            self._on_namespace(ns)

    def _on_namespace(self, ns: dict) -> None:
        if (ns.get("status") or {}).get("phase") != "Terminating":
            self.reconcile(ns["metadata"]["name"])

    def _on_configmap(self, cm: dict) -> None:
        meta = cm.get("metadata") or {}
        if meta.get("name") == CONFIGMAP_NAME and not self._reconciling:
            self.reconcile(meta.get("namespace", ""))

    def reconcile(self, namespace: str) -> None:
        if namespace in IGNORED_NAMESPACES or self.namespaces.get(namespace) is None:
            return
        want = self.root_pem()
        current = self.configmaps.get(CONFIGMAP_NAME, namespace)
        self._reconciling = True  # our own write comes back as an event; do not loop on it
        try:
            if current is None:
                self.client.create({"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": CONFIGMAP_NAME, "namespace": namespace, "labels": dict(LABELS)},
                                    "data": {DATA_KEY: want}})
                log.info("wrote %s/%s", namespace, CONFIGMAP_NAME)
            elif (current.get("data") or {}).get(DATA_KEY) != want:
                updated = {**current, "data": {**(current.get("data") or {}), DATA_KEY: want}}
                self.client.update(updated)
                log.info("updated %s/%s", namespace, CONFIGMAP_NAME)
        except ConflictError:
            pass  # created meanwhile: the next event reconciles it
        finally:
            self._reconciling = False
