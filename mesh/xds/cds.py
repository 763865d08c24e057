"""CDS generator: the clusters of a sidecar.

Go: ``CdsGenerator`` and ``cdsNeedsPush`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/cds.go#L24-L82.
Clusters change only on full pushes; a full push about kinds that no cluster depends on is skipped.
Outbound clusters are the same for every sidecar (mesh has no Sidecar scoping), so they are built
once per push and shared — in variants: with auto mTLS for proxies that have a workload
certificate (``networking/tls.py``) and without for the others, and for sidecars or gateways
(which differ on sniffed ports and on ``credentialName``, ``networking/cluster_tls.py``); only the
inbound ones are per proxy.
A gateway gets no PassthroughCluster (it has no original-destination listener), a captured sidecar
also gets ``InboundPassthroughClusterIpv4`` (``BuildClusters``,
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/cluster.go#L233-L272).
"""

from __future__ import annotations

from mesh.model.push_request import PushRequest
from mesh.networking.cluster import (
    PASSTHROUGH,
    blackhole_cluster,
    build_inbound_clusters,
    build_outbound_clusters,
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
            return [r for r in shared if r.name != PASSTHROUGH]
        inbound = [Resource(c["name"], c) for c in build_inbound_clusters(state.instances, state.proxy.captured)]
        return shared + inbound


def _outbound(push: PushContext, auto_mtls: bool, sidecar: bool) -> list[Resource]:
    clusters = [c for service in push.services for c in build_outbound_clusters(push, service, auto_mtls, sidecar)]
    clusters += [blackhole_cluster(), passthrough_cluster()]
    return [Resource(c["name"], c) for c in clusters]
