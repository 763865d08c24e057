"""Config: one Istio configuration object (VirtualService, DestinationRule, ...) as istiod holds it.

Go: ``config.Config`` and ``config.Meta``
(https://github.com/istio/istio/blob/1.19.0/pkg/config/model.go#L45-L107) and the store
interface ``model.ConfigStore``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/config.go#L153-L217).
Whatever the source — CRDs through the kube client, a directory of YAML files, Ingress or
Gateway API objects converted on the fly — the rest of istiod sees the same thing: a kind,
metadata, and a spec. Specs stay dicts with the camelCase field names of the Istio API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class Config:
    kind: str  # "VirtualService"
    group: str  # "networking.istio.io"
    version: str  # "v1beta1"
    name: str
    namespace: str
    spec: dict = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    resource_version: str = ""
    creation_timestamp: str = ""
    domain: str = "cluster.local"
    status: dict | None = None
    uid: str = ""  # metadata.uid: what an ownerReference names
    owner_references: list[dict] = field(default_factory=list)  # metadata.ownerReferences

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    @classmethod
    def from_object(cls, obj: dict, domain: str = "cluster.local") -> Config:
        """A Kubernetes custom resource (as JSON) → Config."""
        group, _, version = obj.get("apiVersion", "").rpartition("/")
        meta = obj.get("metadata") or {}
        return cls(
            kind=obj.get("kind", ""), group=group, version=version,
            name=meta.get("name", ""), namespace=meta.get("namespace", ""),
            spec=obj.get("spec") or {}, labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            resource_version=str(meta.get("resourceVersion", "")),
            creation_timestamp=meta.get("creationTimestamp", ""), domain=domain, status=obj.get("status"),
            uid=str(meta.get("uid") or ""), owner_references=list(meta.get("ownerReferences") or []),
        )

    def to_object(self) -> dict:
        meta = {"name": self.name, "namespace": self.namespace}
        if self.labels:
            meta["labels"] = dict(self.labels)
        if self.annotations:
            meta["annotations"] = dict(self.annotations)
        if self.resource_version:
            meta["resourceVersion"] = self.resource_version
        if self.uid:
            meta["uid"] = self.uid
        if self.owner_references:
            meta["ownerReferences"] = [dict(o) for o in self.owner_references]
        obj = {"apiVersion": f"{self.group}/{self.version}", "kind": self.kind, "metadata": meta, "spec": self.spec}
        if self.status is not None:
            obj["status"] = self.status
        return obj


ConfigHandler = Callable[[Config | None, Config | None, str], object]  # (old, new, event)


class ConfigStore(Protocol):
    """Read side of ``model.ConfigStore`` plus handlers (``ConfigStoreController``)."""

    def get(self, kind: str, name: str, namespace: str) -> Config | None: ...

    def list(self, kind: str, namespace: str | None = None) -> list[Config]: ...

    def register_event_handler(self, kind: str, handler: ConfigHandler) -> None: ...
