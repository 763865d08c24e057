"""CDS generator: the clusters of a sidecar.

Go: ``CdsGenerator`` and ``cdsNeedsPush`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/cds.go#L24-L82.
Clusters change only on full pushes; a full push about kinds that no cluster depends on is skipped.
Outbound clusters are those of the proxy's SidecarScope (``mesh/networking/sidecar.py``); proxies
whose scopes are alike share them, built once per push — in variants: with auto mTLS for proxies
that have a workload certificate (``networking/tls.py``) and without for the others, and for
sidecars or gateways (which differ on sniffed ports and on ``credentialName``,
``networking/cluster_tls.py``); the inbound ones are shared by the proxies whose instances agree
in what they read (``inbound_clusters_key``: every replica of a service, when captured) unless
their Sidecar has ingress listeners, so that alike proxies get the very same resource objects and
ADS can share their whole response. Across pushes each service's
clusters come from the typed XdsCache (``mesh.xds.typed_cache``) until its ServiceEntry key or its
DestinationRule changes.
A gateway gets no PassthroughCluster (it has no original-destination listener), a captured sidecar
also gets ``InboundPassthroughClusterIpv4`` (``BuildClusters``,
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/cluster.go#L233-L272).
"""

from __future__ import annotations

from mesh.model.push_request import ConfigKey, PushRequest
from mesh.networking.cluster import (
    PASSTHROUGH,
    blackhole_cluster,
    build_inbound_clusters,
    build_outbound_clusters,
    inbound_clusters_key,
    passthrough_cluster,
)
from mesh.networking.push_context import PushContext
from mesh.networking.tls import has_workload_cert
from mesh.xds.generator import ProxyState, Resource, WatchedResource, needs_push
from mesh.xds.types import CLUSTER


class CdsGenerator:
    def generate(self, state: ProxyState, push: PushContext, watched: WatchedResource,
                 request: PushRequest | None) -> list[Resource] | None:
        if not needs_push(request, CLUSTER):
            return None
        mtls = has_workload_cert(state.proxy.metadata)
        sidecar = state.proxy.type != "router"
        # alike for every proxy of a kind
        shared = push.memo(("cds-outbound", mtls, sidecar), lambda: _outbound(push, mtls, sidecar))
        if not sidecar:  # a gateway only sends traffic out, never to an original destination
            return push.memo(("cds-gateway", mtls), lambda: [r for r in shared if r.name != PASSTHROUGH])
        scope = getattr(push, "scope", None)
        ingress = scope.ingress if scope is not None else []
        instances, captured = state.instances, state.proxy.captured
        if ingress:  # built per proxy: ingress listeners may read the proxy's own addresses
            owner = (scope.name, scope.namespace)
            return shared + [Resource(c["name"], c) for c in build_inbound_clusters(
                instances, captured, ingress, state.proxy.ip_addresses, owner)]
        # alike for the proxies whose instances agree in what the inbound clusters read: the very
        # same list, so ADS finds their shared response by its identity
        return push.memo(("cds", mtls, inbound_clusters_key(instances, captured)), lambda: shared + [
            Resource(c["name"], c) for c in build_inbound_clusters(instances, captured)])


def _outbound(push: PushContext, auto_mtls: bool, sidecar: bool) -> list[Resource]:
    out = [r for service in push.services for r in _service_clusters(push, service, auto_mtls, sidecar)]
    return out + [Resource(c["name"], c) for c in (blackhole_cluster(), passthrough_cluster())]


def _service_clusters(push: PushContext, service, auto_mtls: bool, sidecar: bool) -> list[Resource]:
    """One service's clusters through the typed XdsCache, keyed as ``clusterCache`` keys them
    (cluster_cache.go: service, ports, DestinationRule by name — every rule a merged one came from —
    the proxy's kind and mTLS ability) and depending on the service's ServiceEntry key and those rules."""
    def build():
        return [Resource(c["name"], c) for c in build_outbound_clusters(push, service, auto_mtls, sidecar)]
    cache = push.xds_cache
    if cache is None:
        return build()
    sources = push.destination_rule_sources(service.hostname)
    key = ("CDS", service.hostname, service.namespace, tuple((p.port, p.protocol.value) for p in service.ports),
           auto_mtls, sidecar, sources)
    found = cache.get(key)
    if found is None:
        found = build()
        deps = [ConfigKey("ServiceEntry", service.hostname, service.namespace)]
        deps += [ConfigKey("DestinationRule", name, ns) for ns, name in sources]
        cache.add(key, deps, push.cache_token, found)
    return found
