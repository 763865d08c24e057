"""Endpoint builder: EDS ClusterLoadAssignments, grouped by locality.

Go: ``generateEndpoints`` and ``localityEndpointsForCluster``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/eds.go#L226-L319 and the endpoint
builder https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/endpoint_builder.go.

A cluster name says everything needed: ``outbound|9080|v2|reviews.default.svc.cluster.local``
→ the service, its port 9080, and the subset ``v2`` whose labels (from the DestinationRule)
select which endpoints belong. Endpoints are grouped by locality (region/zone/subzone) so
Envoy can prefer near ones; each group's weight is the sum of its endpoints' weights.

mTLS: an endpoint whose pod runs a sidecar with a workload certificate (``tlsMode: istio`` and
the pod's IP in ``push.mtls_addresses``) carries ``envoy.transport_socket_match: {tlsMode: istio}``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/endpoint_builder.go#L417-L424 and
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/util/util.go#L472-L490), so a
client with auto mTLS speaks TLS to it. The endpoint advertises the app's own port: the
destination pod's iptables redirects the connection to its sidecar's 15006. Only for a sidecar
that nothing captures (INTERCEPTION_MODE=NONE, the loopback demo; ``push.uncaptured_addresses``)
the port becomes its inbound listener's, 15006, which routes by ``Host`` to the app — what the
redirect would have done.

Every endpoint names its workload for telemetry: ``istio.workload`` is
``<workload>;<namespace>;<canonical service>;<canonical revision>;<cluster>``, the canonical
names from the ``service.istio.io/canonical-*``, ``app.kubernetes.io/*`` or ``app``/``version``
labels, a revision of ``latest`` written empty (``AppendLbEndpointMetadata``,
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/util/util.go#L472-L515, and
``CanonicalService``, https://github.com/istio/istio/blob/1.19.0/pkg/kube/labels/labels.go#L21-L83).

Simplifications, named: one network (no cross-network gateways) and one cluster (``Kubernetes``);
``tlsMode: istio`` endpoints whose sidecar has no certificate (or is not running) stay plaintext.
"""

from __future__ import annotations

from mesh.model.service import HealthStatus, IstioEndpoint
from mesh.networking.cluster import parse_cluster_name
from mesh.networking.push_context import PushContext
from mesh.networking.tls import INBOUND_CAPTURE_PORT, TLS_MODE_ISTIO, TRANSPORT_SOCKET_MATCH


def subset_labels(push: PushContext, hostname: str, subset: str) -> dict[str, str] | None:
    """The labels of a DestinationRule subset; None when the subset is not defined."""
    if not subset:
        return {}
    rule = push.destination_rule(hostname)
    for s in (rule.spec.get("subsets") or []) if rule is not None else []:
        if s.get("name") == subset:
            return dict(s.get("labels") or {})
    return None


def build_cluster_load_assignment(push: PushContext, cluster_name: str) -> dict:
    """The endpoints of one cluster. A cluster that names no known service or subset gets an
    empty assignment: Envoy needs an answer to finish warming the cluster."""
    empty = {"clusterName": cluster_name, "endpoints": []}
    try:
        direction, port, subset, hostname = parse_cluster_name(cluster_name)
    except ValueError:
        return empty
    service = push.service(hostname)
    if direction != "outbound" or service is None or service.port_by_number(port) is None:
        return empty
    labels = subset_labels(push, hostname, subset)
    if labels is None:
        return empty
    endpoints = [ep for ep in push.endpoints(hostname, port)
                 if all(ep.labels.get(k) == v for k, v in labels.items())]
    return {"clusterName": cluster_name,
            "endpoints": locality_lb_endpoints(endpoints, push.mtls_addresses, push.uncaptured_addresses)}


def locality_lb_endpoints(endpoints: list[IstioEndpoint], mtls_addresses: frozenset[str] = frozenset(),
                          uncaptured: frozenset[str] = frozenset()) -> list[dict]:
    groups: dict[str, list[IstioEndpoint]] = {}
    for ep in endpoints:
        groups.setdefault(ep.locality, []).append(ep)
    out = []
    for locality in sorted(groups):
        members = sorted(groups[locality], key=lambda e: (e.address, e.endpoint_port))
        lb_endpoints = [_lb_endpoint(ep, mtls_addresses, uncaptured) for ep in members]
        group: dict = {"lbEndpoints": lb_endpoints,
                       "loadBalancingWeight": sum(e["loadBalancingWeight"] for e in lb_endpoints)}
        if locality:
            group["locality"] = _locality(locality)
        out.append(group)
    return out


def _lb_endpoint(ep: IstioEndpoint, mtls_addresses: frozenset[str] = frozenset(),
                 uncaptured: frozenset[str] = frozenset()) -> dict:
    mtls = ep.tls_mode == TLS_MODE_ISTIO and ep.address in mtls_addresses
    port = INBOUND_CAPTURE_PORT if mtls and ep.address in uncaptured else ep.endpoint_port
    out = {
        "endpoint": {"address": {"socketAddress": {"address": ep.address, "portValue": port}}},
        "loadBalancingWeight": ep.lb_weight or 1,
        "healthStatus": "HEALTHY" if ep.health == HealthStatus.HEALTHY else "UNHEALTHY",
    }
    out["metadata"] = {"filterMetadata": {"istio": {"workload": workload_metadata(ep)}}}
    if mtls:
        out.setdefault("metadata", {"filterMetadata": {}})["filterMetadata"][TRANSPORT_SOCKET_MATCH] = {
            "tlsMode": TLS_MODE_ISTIO}
    return out


CLUSTER_ID = "Kubernetes"
_NAME_LABELS = ("service.istio.io/canonical-name", "app.kubernetes.io/name", "app")
_REVISION_LABELS = ("service.istio.io/canonical-revision", "app.kubernetes.io/version", "version")


def workload_metadata(ep: IstioEndpoint) -> str:
    """``istio.workload``: ``name;namespace;canonical service;canonical revision;cluster``."""
    name = next((ep.labels[k] for k in _NAME_LABELS if k in ep.labels), ep.workload_name)
    revision = next((ep.labels[k] for k in _REVISION_LABELS if k in ep.labels), "latest")
    return ";".join([ep.workload_name, ep.namespace, name, "" if revision == "latest" else revision, CLUSTER_ID])


def _locality(text: str) -> dict:
    keys = ("region", "zone", "subZone")
    return {k: v for k, v in zip(keys, text.split("/"), strict=False) if v}
