"""EndpointSlice → IstioEndpoints: the endpoint builder and the per-host slice cache.

Go:
- ``NewEndpointBuilder`` / ``buildIstioEndpoint``
  https://github.com/istio/istio/blob/1.19.0/pilot/pkg/serviceregistry/kube/controller/endpoint_builder.go#L51-L156
  — what an endpoint learns from its pod: labels, ``spiffe://`` identity, locality, tlsMode,
  network, workload name, node;
- ``AugmentLabels`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/serviceregistry/util/label/label.go#L35-L76
  — the topology labels added to the pod's own;
- ``endpointHealthStatus`` and ``updateEndpointCacheForSlice``
  https://github.com/istio/istio/blob/1.19.0/pilot/pkg/serviceregistry/kube/controller/endpointslice.go#L161-L220;
- ``endpointSliceCache`` (#L268-L352): a host's endpoints are the union of its slices',
  de-duplicated by (address, port name).

Simplifications, named: no Draining status (``PILOT_PERSISTENT_SESSION_LABEL`` is unset by
default); ``tls_mode`` is also "istio" for a pod that carries the ``sidecar.istio.io/status``
annotation but not the ``security.istio.io/tlsMode`` label (Go reads only the label, which the
injector always sets next to the annotation); a pod without ``serviceAccountName`` gets
``default``, as the API server would have filled in.
"""

from __future__ import annotations

import re

from mesh.model.service import HealthStatus, IstioEndpoint

# Label and annotation names (istio.io/api label and annotation packages, Kubernetes well-known labels).
TLS_MODE_LABEL = "security.istio.io/tlsMode"
SIDECAR_STATUS_ANNOTATION = "sidecar.istio.io/status"
NETWORK_LABEL = "topology.istio.io/network"
CLUSTER_LABEL = "topology.istio.io/cluster"
SUBZONE_LABEL = "topology.istio.io/subzone"
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL_BETA = "failure-domain.beta.kubernetes.io/region"
ZONE_LABEL_BETA = "failure-domain.beta.kubernetes.io/zone"
HOSTNAME_LABEL = "kubernetes.io/hostname"
LOCALITY_LABEL = "istio-locality"  # a pod may name its own locality, dots for slashes
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MIRRORING_CONTROLLER = "endpointslicemirroring-controller.k8s.io"

_CRONJOB_NAME = re.compile(r"(.+)-\d{8,10}$")


def tls_mode_of(labels: dict[str, str], annotations: dict[str, str] | None = None) -> str:
    if TLS_MODE_LABEL in labels:
        return labels[TLS_MODE_LABEL]
    if annotations and SIDECAR_STATUS_ANNOTATION in annotations:
        return "istio"
    return "disabled"


def split_locality(locality: str) -> tuple[str, str, str]:
    parts = locality.split("/") + ["", ""]
    return parts[0], parts[1], parts[2]


def augment_labels(
    labels: dict[str, str], cluster_id: str, locality: str, node: str, network: str
) -> dict[str, str]:
    """``AugmentLabels``: the workload's labels plus topology labels istiod derives."""
    out = dict(labels)
    region, zone, subzone = split_locality(locality)
    if region:
        out[REGION_LABEL] = region
    if zone:
        out[ZONE_LABEL] = zone
    if subzone:
        out[SUBZONE_LABEL] = subzone
    if cluster_id:
        out[CLUSTER_LABEL] = cluster_id
    if node:
        out[HOSTNAME_LABEL] = node
    if network:
        out[NETWORK_LABEL] = network
    return out


def node_locality(node: dict | None) -> str:
    """``getPodLocality`` for a pod on ``node``: region/zone/subzone from the node's labels."""
    if node is None:
        return ""
    labels = (node.get("metadata") or {}).get("labels") or {}
    region = labels.get(REGION_LABEL) or labels.get(REGION_LABEL_BETA, "")
    zone = labels.get(ZONE_LABEL) or labels.get(ZONE_LABEL_BETA, "")
    subzone = labels.get(SUBZONE_LABEL, "")
    if not (region or zone or subzone):
        return ""
    return f"{region}/{zone}/{subzone}"


def workload_name(pod: dict | None) -> str:
    """``GetDeployMetaFromPod``: the Deployment (or other controller) a pod belongs to."""
    if pod is None:
        return ""
    meta = pod.get("metadata") or {}
    name = meta.get("name", "")
    if not meta.get("generateName"):
        return name
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
    if owner is None:
        return name
    owner_name = owner.get("name", "")
    template_hash = (meta.get("labels") or {}).get("pod-template-hash", "")
    if owner.get("kind") == "ReplicaSet" and template_hash and owner_name.endswith(template_hash):
        return owner_name.removesuffix("-" + template_hash)
    if owner.get("kind") == "Job" and (m := _CRONJOB_NAME.fullmatch(owner_name)):
        return m.group(1)
    return owner_name


def endpoint_health(endpoint: dict) -> HealthStatus:
    """Ready unset or true → healthy, else unhealthy."""
    ready = (endpoint.get("conditions") or {}).get("ready")
    return HealthStatus.HEALTHY if ready is None or ready else HealthStatus.UNHEALTHY


class EndpointSliceCache:
    """hostname → slice name → endpoints."""

    def __init__(self):
        self._by_host: dict[str, dict[str, list[IstioEndpoint]]] = {}

    def update(self, hostname: str, slice_name: str, endpoints: list[IstioEndpoint]) -> None:
        slices = self._by_host.setdefault(hostname, {})
        if endpoints:
            slices[slice_name] = endpoints
        else:
            slices.pop(slice_name, None)

    def delete(self, hostname: str, slice_name: str) -> None:
        slices = self._by_host.get(hostname)
        if slices is None:
            return
        slices.pop(slice_name, None)
        if not slices:
            del self._by_host[hostname]

    def has(self, hostname: str) -> bool:
        return hostname in self._by_host

    def get(self, hostname: str) -> list[IstioEndpoint]:
        """The union over slices (in slice-name order), first (address, port name) wins."""
        seen: set[tuple[str, str]] = set()
        out: list[IstioEndpoint] = []
        for _, endpoints in sorted(self._by_host.get(hostname, {}).items()):
            for ep in endpoints:
                key = (ep.address, ep.service_port_name)
                if key not in seen:
                    seen.add(key)
                    out.append(ep)
        return out

    def hostnames(self) -> list[str]:
        return sorted(self._by_host)
