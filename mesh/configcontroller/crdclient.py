"""The CRD config store: Istio custom resources, read through the kube client's informers.

Go: ``crdclient.Client`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/config/kube/crdclient/client.go —
``Get`` and ``List`` (#L174-L262) read the informer caches; ``addCRD`` (#L323-L388) creates one
informer per kind with a revision filter and handlers; ``onEvent`` (#L390-L406) translates the
objects into ``config.Config`` and calls every handler of the kind with (old, new, event).

One stored object per group/kind/namespace/name: a VirtualService written as
``networking.istio.io/v1alpha3`` and read as ``v1beta1`` is the same object (the informers
key by group and kind, never by version), and its ``Config.version`` says which version it was
last written in.

"Unchanged spec" detection is ``needsPush``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/config_compare.go#L26-L70): an
update whose spec is equal and whose labels/annotations carry nothing ``istio.io`` does not
need a push (e.g. a ``kubectl label`` on a VirtualService). The store still tells handlers —
as in istiod, deciding is the handler's job — but ``register_event_handler(...,
skip_unchanged=True)`` applies the check for you.
"""

from __future__ import annotations

import logging

from mesh.kube.client import KubeClient
from mesh.kube.kinds import Kind, lookup
from mesh.model.config import Config, ConfigHandler

log = logging.getLogger(__name__)

NETWORKING = "networking.istio.io"
SECURITY = "security.istio.io"

# The kinds this store serves (istiod's collections.Pilot, the part mesh models).
ISTIO_KINDS: dict[str, str] = {
    "VirtualService": NETWORKING,
    "DestinationRule": NETWORKING,
    "Gateway": NETWORKING,
    "ServiceEntry": NETWORKING,
    "Sidecar": NETWORKING,
    "WorkloadEntry": NETWORKING,
    "WorkloadGroup": NETWORKING,
    "PeerAuthentication": SECURITY,
    "AuthorizationPolicy": SECURITY,
    "RequestAuthentication": SECURITY,
}

REVISION_LABEL = "istio.io/rev"
EVENT_ADD, EVENT_UPDATE, EVENT_DELETE = "add", "update", "delete"


def labels_in_revision(labels: dict[str, str], revision: str) -> bool:
    """``config.LabelsInRevision``: unlabelled objects belong to every revision."""
    rev = labels.get(REVISION_LABEL)
    if rev is None:
        return True
    if revision == "":
        return rev in ("", "default")
    return rev == revision


def needs_push(prev: Config | None, curr: Config | None) -> bool:
    """``needsPush``: does this update change anything a proxy could see?"""
    if prev is None or curr is None:
        return True
    if (prev.group, prev.kind) != (curr.group, curr.kind):
        return True
    if not prev.group.endswith("istio.io"):
        return True
    for meta in (curr.labels, curr.annotations, prev.labels, prev.annotations):
        if any("istio.io" in k for k in meta):
            return True
    return prev.spec != curr.spec


class CrdClient:
    """``ConfigStoreController`` over the kube client for Istio's own kinds."""

    def __init__(self, client: KubeClient, domain_suffix: str = "cluster.local", revision: str = "",
                 kinds: dict[str, str] | None = None):
        self.client = client
        self.domain_suffix = domain_suffix
        self.revision = revision
        self.kinds = dict(kinds or ISTIO_KINDS)
        self.handler_count: dict[str, int] = {}

    def schemas(self) -> list[str]:
        return sorted(self.kinds)

    def _kind(self, kind: str) -> Kind | None:
        group = self.kinds.get(kind)
        return lookup(group, kind) if group else None

    def _translate(self, obj: dict) -> Config:
        return Config.from_object(obj, self.domain_suffix)

    def _ours(self, obj: dict) -> bool:
        return labels_in_revision((obj.get("metadata") or {}).get("labels") or {}, self.revision)

    # -- ConfigStore ------------------------------------------------------------------------------
    def get(self, kind: str, name: str, namespace: str) -> Config | None:
        k = self._kind(kind)
        if k is None:
            return None
        obj = self.client.informer(k).get(name, namespace)
        return self._translate(obj) if obj is not None and self._ours(obj) else None

    def list(self, kind: str, namespace: str | None = None) -> list[Config]:
        k = self._kind(kind)
        if k is None:
            return []
        return [self._translate(o) for o in self.client.informer(k).list(namespace) if self._ours(o)]

    # -- writes (``Create``/``Update``/``Delete``, client.go#L191-L245), through the kube client ------
    def create(self, cfg: Config) -> Config:
        """Write a new object; its informer event reaches the handlers as any other add."""
        return self._translate(self.client.create(cfg.to_object()))

    def update(self, cfg: Config) -> Config:
        return self._translate(self.client.update(cfg.to_object()))

    def delete(self, kind: str, name: str, namespace: str) -> None:
        k = self._kind(kind)
        if k is None:
            raise KeyError(f"{kind} is not served by the CRD store")
        self.client.delete(k, name, namespace)

    def register_event_handler(self, kind: str, handler: ConfigHandler, skip_unchanged: bool = False) -> None:
        """Call ``handler(old, new, event)`` on every change of ``kind``. A handler registered
        after objects exist first receives an add for each (client-go's late-handler rule)."""
        k = self._kind(kind)
        if k is None:
            raise KeyError(f"{kind} is not served by the CRD store (kinds: {', '.join(self.schemas())})")
        self.handler_count[kind] = self.handler_count.get(kind, 0) + 1

        def on_add(obj: dict) -> None:
            if self._ours(obj):
                handler(None, self._translate(obj), EVENT_ADD)

        def on_update(old: dict, obj: dict) -> None:
            was, now = self._ours(old), self._ours(obj)
            if was and not now:  # moved to another revision: gone for us
                handler(None, self._translate(old), EVENT_DELETE)
            elif now and not was:
                handler(None, self._translate(obj), EVENT_ADD)
            elif now:
                prev, curr = self._translate(old), self._translate(obj)
                if skip_unchanged and not needs_push(prev, curr):
                    log.debug("skipping %s %s/%s: spec unchanged", kind, curr.namespace, curr.name)
                    return
                handler(prev, curr, EVENT_UPDATE)

        def on_delete(obj: dict) -> None:
            if self._ours(obj):
                handler(None, self._translate(obj), EVENT_DELETE)

        self.client.informer(k).add_event_handler(on_add=on_add, on_update=on_update, on_delete=on_delete)

    def has_synced(self) -> bool:
        return all(self.client.informer(self._kind(k)).has_synced() for k in self.kinds)

    # -- typed accessors ----------------------------------------------------------------------------
    def virtual_services(self, namespace: str | None = None) -> list[Config]:
        return self.list("VirtualService", namespace)

    def destination_rules(self, namespace: str | None = None) -> list[Config]:
        return self.list("DestinationRule", namespace)

    def gateways(self, namespace: str | None = None) -> list[Config]:
        return self.list("Gateway", namespace)

    def service_entries(self, namespace: str | None = None) -> list[Config]:
        return self.list("ServiceEntry", namespace)

    def sidecars(self, namespace: str | None = None) -> list[Config]:
        return self.list("Sidecar", namespace)

    def workload_entries(self, namespace: str | None = None) -> list[Config]:
        return self.list("WorkloadEntry", namespace)

    def peer_authentications(self, namespace: str | None = None) -> list[Config]:
        return self.list("PeerAuthentication", namespace)

    def authorization_policies(self, namespace: str | None = None) -> list[Config]:
        return self.list("AuthorizationPolicy", namespace)

    def request_authentications(self, namespace: str | None = None) -> list[Config]:
        return self.list("RequestAuthentication", namespace)
