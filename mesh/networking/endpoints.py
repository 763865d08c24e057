"""Endpoint builder: EDS ClusterLoadAssignments, grouped by locality.

Go: ``generateEndpoints`` and ``localityEndpointsForCluster``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/eds.go#L226-L319 and the endpoint
builder https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/endpoint_builder.go.

A cluster name says everything needed: ``outbound|9080|v2|reviews.default.svc.cluster.local``
→ the service, its port 9080, and the subset ``v2`` whose labels (from the DestinationRule)
select which endpoints belong. Endpoints are grouped by locality (region/zone/subzone) so
Envoy can prefer near ones; each group's weight is the sum of its endpoints' weights.

Simplifications, named: one network (no cross-network gateways), no mTLS metadata on endpoints.
"""

from __future__ import annotations

from mesh.model.service import HealthStatus, IstioEndpoint
from mesh.networking.cluster import parse_cluster_name
from mesh.networking.push_context import PushContext


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
    return {"clusterName": cluster_name, "endpoints": locality_lb_endpoints(endpoints)}


def locality_lb_endpoints(endpoints: list[IstioEndpoint]) -> list[dict]:
    groups: dict[str, list[IstioEndpoint]] = {}
    for ep in endpoints:
        groups.setdefault(ep.locality, []).append(ep)
    out = []
    for locality in sorted(groups):
        members = sorted(groups[locality], key=lambda e: (e.address, e.endpoint_port))
        lb_endpoints = [_lb_endpoint(ep) for ep in members]
        group: dict = {"lbEndpoints": lb_endpoints,
                       "loadBalancingWeight": sum(e["loadBalancingWeight"] for e in lb_endpoints)}
        if locality:
            group["locality"] = _locality(locality)
        out.append(group)
    return out


def _lb_endpoint(ep: IstioEndpoint) -> dict:
    out = {
        "endpoint": {"address": {"socketAddress": {"address": ep.address, "portValue": ep.endpoint_port}}},
        "loadBalancingWeight": ep.lb_weight or 1,
        "healthStatus": "HEALTHY" if ep.health == HealthStatus.HEALTHY else "UNHEALTHY",
    }
    meta = {k: v for k, v in (("workload", ep.workload_name), ("namespace", ep.namespace)) if v}
    if meta:
        out["metadata"] = {"filterMetadata": {"istio": meta}}
    return out


def _locality(text: str) -> dict:
    keys = ("region", "zone", "subZone")
    return {k: v for k, v in zip(keys, text.split("/"), strict=False) if v}
