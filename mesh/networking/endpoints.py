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
client with auto mTLS speaks TLS to it. Without iptables there is nothing to redirect the
connection to that sidecar, so the endpoint's port becomes the sidecar's inbound port (15006),
which routes by ``Host`` to the app — what the redirect would have done.

Simplifications, named: one network (no cross-network gateways); ``tlsMode: istio`` endpoints
whose sidecar has no certificate (or is not running) stay plaintext, on the app's port.
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
    return {"clusterName": cluster_name, "endpoints": locality_lb_endpoints(endpoints, push.mtls_addresses)}


def locality_lb_endpoints(endpoints: list[IstioEndpoint], mtls_addresses: frozenset[str] = frozenset()) -> list[dict]:
    groups: dict[str, list[IstioEndpoint]] = {}
    for ep in endpoints:
        groups.setdefault(ep.locality, []).append(ep)
    out = []
    for locality in sorted(groups):
        members = sorted(groups[locality], key=lambda e: (e.address, e.endpoint_port))
        lb_endpoints = [_lb_endpoint(ep, mtls_addresses) for ep in members]
        group: dict = {"lbEndpoints": lb_endpoints,
                       "loadBalancingWeight": sum(e["loadBalancingWeight"] for e in lb_endpoints)}
        if locality:
            group["locality"] = _locality(locality)
        out.append(group)
    return out


def _lb_endpoint(ep: IstioEndpoint, mtls_addresses: frozenset[str] = frozenset()) -> dict:
    mtls = ep.tls_mode == TLS_MODE_ISTIO and ep.address in mtls_addresses
    port = INBOUND_CAPTURE_PORT if mtls else ep.endpoint_port
    out = {
        "endpoint": {"address": {"socketAddress": {"address": ep.address, "portValue": port}}},
        "loadBalancingWeight": ep.lb_weight or 1,
        "healthStatus": "HEALTHY" if ep.health == HealthStatus.HEALTHY else "UNHEALTHY",
    }
    meta = {k: v for k, v in (("workload", ep.workload_name), ("namespace", ep.namespace)) if v}
    if meta:
        out["metadata"] = {"filterMetadata": {"istio": meta}}
    if mtls:
        out.setdefault("metadata", {"filterMetadata": {}})["filterMetadata"][TRANSPORT_SOCKET_MATCH] = {
            "tlsMode": TLS_MODE_ISTIO}
    return out


def _locality(text: str) -> dict:
    keys = ("region", "zone", "subZone")
    return {k: v for k, v in zip(keys, text.split("/"), strict=False) if v}
