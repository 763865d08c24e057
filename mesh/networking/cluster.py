"""Cluster builder: CDS for a sidecar — one outbound cluster per service port and subset.

Go: ``BuildClusters`` / ``buildOutboundClusters``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/cluster.go#L311-L392,
subsets ``buildSubsetCluster``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/cluster_builder.go#L182-L252,
the default cluster (#L362-L447), traffic policy merge ``MergeTrafficPolicy`` (#L313-L360),
connection pools ``applyConnectionPool`` (#L888-L962), load balancers ``applyLoadBalancer``
(cluster.go#L843-L894), the default circuit-breaker thresholds (cluster.go#L62-L76) and the
BlackHole / Passthrough clusters (cluster_builder.go#L683-L709).

Names are Istio's, because every tool reads them: ``outbound|9080|v1|reviews.default.svc.cluster.local``
is direction, port, subset (empty for the whole service) and host. The EDS service name of a
cluster is the cluster name itself, so EDS can look the service and subset back up from it.

Auto mTLS (``buildAutoMtlsSettings``, cluster_builder.go#L801-L860): for a proxy whose agent
serves it a workload certificate over SDS, every EDS cluster of an in-mesh service gets
``transportSocketMatches`` — mutual TLS to endpoints marked ``tlsMode: istio``, plaintext to the
rest — checking the server against the service's SPIFFE identities (``networking/tls.py``).

Quiet defaults, as istiod writes them: every cluster carries ``common_lb_config``
(``buildDefaultCluster``, cluster_builder.go#L362-L370), and outbound ones
``locality_weighted_lb_config`` because the mesh's ``localityLbSetting`` is enabled by default
(``applyLoadBalancer``, cluster.go#L847-L860); ``metadata.filter_metadata.istio.services`` names the
service(s) of outbound and inbound clusters (``addTelemetryMetadata``, cluster.go#L997-L1040).

Inbound clusters depend on how traffic reaches the proxy (``Proxy.captured``):

* REDIRECT: ``inbound|<targetPort>||`` is ORIGINAL_DST — the connection already carries the
  pod's own address and the app's port — and binds its upstream side to 127.0.0.6
  (``buildInboundClusterForPortOrUDS``, cluster_builder.go#L449-L528), the address the pod's
  iptables lets through without a second redirect; ``InboundPassthroughClusterIpv4`` does the
  same for ports no Service names (``buildInboundPassthroughClusters``, cluster_builder.go#L647-L680).
* NONE: nothing to recover the destination from, so ``inbound|<port>||`` is a STATIC cluster
  pointing at the app on the pod IP (as Istio's Sidecar ``ingress`` with a ``defaultEndpoint``).

Gateways get no PassthroughCluster: they have no original-destination listener (cluster.go#L266-L269).

Simplifications, named: no DestinationRule ``tls`` settings, no outlier detection, no locality
failover settings, no port-level traffic policies, IPv4 only.
"""

from __future__ import annotations

from mesh.model.config import Config
from mesh.model.service import Port, Resolution, Service
from mesh.networking.extensions import HTTP_PROTOCOL_OPTIONS_TYPE
from mesh.networking.push_context import PushContext, ServiceInstance
from mesh.networking.tls import auto_mtls_socket_matches, outbound_sni

UINT32_MAX = 4294967295
DEFAULT_CONNECT_TIMEOUT = "10s"  # MeshConfig.connectTimeout
BLACKHOLE = "BlackHoleCluster"
PASSTHROUGH = "PassthroughCluster"
INBOUND_PASSTHROUGH_IPV4 = "InboundPassthroughClusterIpv4"
INBOUND_PASSTHROUGH_BIND_IPV4 = "127.0.0.6"  # listener_address.go#L36

_LB_POLICIES = {"ROUND_ROBIN": "ROUND_ROBIN", "LEAST_REQUEST": "LEAST_REQUEST", "LEAST_CONN": "LEAST_REQUEST",
                "RANDOM": "RANDOM", "PASSTHROUGH": "CLUSTER_PROVIDED"}


def outbound_cluster_name(port: int, subset: str, host: str) -> str:
    return f"outbound|{port}|{subset}|{host}"


def inbound_cluster_name(port: int) -> str:
    return f"inbound|{port}||"


def parse_cluster_name(name: str) -> tuple[str, int, str, str]:
    """``outbound|9080|v1|reviews...`` → ("outbound", 9080, "v1", "reviews..."); ValueError otherwise."""
    parts = name.split("|")
    if len(parts) != 4 or not parts[1].isdigit():
        raise ValueError(f"not an Istio cluster name: {name!r}")
    return parts[0], int(parts[1]), parts[2], parts[3]


def build_sidecar_clusters(push: PushContext, instances: list[ServiceInstance], captured: bool = True) -> list[dict]:
    """Every cluster a sidecar gets: outbound for all services, the two catch-alls, inbound for its
    own ports (and the inbound passthrough under capture). Sorted by name so a push's output is stable."""
    clusters = []
    for service in push.services:
        clusters.extend(build_outbound_clusters(push, service))
    clusters.extend([blackhole_cluster(), passthrough_cluster()])
    clusters.extend(build_inbound_clusters(instances, captured))
    return sorted(clusters, key=lambda c: c["name"])


def build_inbound_clusters(instances: list[ServiceInstance], captured: bool) -> list[dict]:
    """``buildInboundClusters``: one per target port, then the passthrough (capture only)."""
    if captured:
        return [build_inbound_cluster(i, True) for i in unique_target_ports(instances)] + [
            inbound_passthrough_cluster()]
    return [build_inbound_cluster(i, False) for i in unique_ports(instances)]


def build_outbound_clusters(push: PushContext, service: Service, auto_mtls: bool = False) -> list[dict]:
    """``auto_mtls``: the proxy has a workload certificate (SDS), so in-mesh clusters may use it."""
    rule = push.destination_rule(service.hostname)
    spec = rule.spec if rule is not None else {}
    out = []
    for port in service.ports:
        if port.protocol == "UDP":
            continue
        policy = spec.get("trafficPolicy") or {}
        identities = service_identities(push, service, port.port) if auto_mtls else None
        out.append(_outbound_cluster(service, port, "", policy, rule, identities))
        for subset in spec.get("subsets") or []:
            merged = merge_traffic_policy(policy, subset.get("trafficPolicy") or {})
            out.append(_outbound_cluster(service, port, subset.get("name", ""), merged, rule, identities))
    return out


def service_identities(push: PushContext, service: Service, port: int) -> list[str]:
    """The SPIFFE identities a server for this service port may present: the service's own
    (``canonical-service-accounts`` and friends) and those of the pods behind it
    (``PushContext.ServiceAccounts``)."""
    found = set(service.service_accounts)
    found.update(ep.service_account for ep in push.endpoints(service.hostname, port) if ep.service_account)
    return sorted(found)


def merge_traffic_policy(base: dict, subset: dict) -> dict:
    """A subset's policy replaces the rule's policy field by field (``MergeTrafficPolicy``)."""
    merged = dict(base)
    merged.update({k: v for k, v in subset.items() if v})
    return merged


def _outbound_cluster(service: Service, port: Port, subset: str, policy: dict, rule: Config | None,
                      mtls_identities: list[str] | None = None) -> dict:
    name = outbound_cluster_name(port.port, subset, service.hostname)
    cluster: dict = {"name": name, "connectTimeout": DEFAULT_CONNECT_TIMEOUT,
                     "commonLbConfig": {"localityWeightedLbConfig": {}}}
    if service.resolution == Resolution.CLIENT_SIDE_LB:
        cluster["type"] = "EDS"
        cluster["edsClusterConfig"] = {"edsConfig": {"ads": {}, "initialFetchTimeout": "0s",
                                                     "resourceApiVersion": "V3"}, "serviceName": name}
    elif service.resolution == Resolution.PASSTHROUGH:
        cluster["type"] = "ORIGINAL_DST"
    else:  # DNS: Envoy resolves the host itself
        cluster["type"] = "STRICT_DNS" if service.resolution == Resolution.DNS_LB else "LOGICAL_DNS"
        target = service.external_name or service.hostname
        cluster["loadAssignment"] = {"clusterName": name, "endpoints": [{"lbEndpoints": [{"endpoint": {
            "address": {"socketAddress": {"address": target, "portValue": port.port}}}}]}]}
    _apply_load_balancer(cluster, policy.get("loadBalancer") or {})
    cluster["circuitBreakers"] = {"thresholds": [_thresholds(policy.get("connectionPool") or {})]}
    tcp = (policy.get("connectionPool") or {}).get("tcp") or {}
    if tcp.get("connectTimeout"):
        cluster["connectTimeout"] = tcp["connectTimeout"]
    if port.protocol in ("HTTP2", "GRPC", "GRPC-Web"):
        cluster["typedExtensionProtocolOptions"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": HTTP_PROTOCOL_OPTIONS_TYPE, "explicitHttpConfig": {"http2ProtocolOptions": {}}}}
    if mtls_identities is not None and cluster["type"] == "EDS" and not service.mesh_external:
        # ORIGINAL_DST and DNS clusters are left alone, as Istio leaves headless services
        cluster["transportSocketMatches"] = auto_mtls_socket_matches(
            mtls_identities, outbound_sni(port.port, subset, service.hostname),
            http2=port.protocol in ("HTTP2", "GRPC", "GRPC-Web"))
    metadata = {"services": [{"host": service.hostname, "name": service.name, "namespace": service.namespace}]}
    if subset:
        metadata["subset"] = subset
    if rule is not None:
        metadata["config"] = f"/apis/networking.istio.io/v1alpha3/namespaces/{rule.namespace}/destination-rule/{rule.name}"
    cluster["metadata"] = {"filterMetadata": {"istio": metadata}}
    return cluster


def _apply_load_balancer(cluster: dict, lb: dict) -> None:
    if cluster["type"] == "ORIGINAL_DST":
        cluster["lbPolicy"] = "CLUSTER_PROVIDED"
        return
    simple = lb.get("simple", "")
    cluster["lbPolicy"] = _LB_POLICIES.get(simple, "LEAST_REQUEST")  # Istio's default is LEAST_REQUEST
    if simple == "PASSTHROUGH":
        cluster["type"] = "ORIGINAL_DST"
        cluster.pop("edsClusterConfig", None)
        cluster.pop("loadAssignment", None)
    hashing = lb.get("consistentHash")
    if hashing:
        cluster["lbPolicy"] = "MAGLEV" if "maglev" in hashing else "RING_HASH"


def _thresholds(pool: dict) -> dict:
    """Istio lifts Envoy's small defaults to "unlimited", then applies the DestinationRule's pool."""
    tcp, http = pool.get("tcp") or {}, pool.get("http") or {}
    return {
        "maxConnections": tcp.get("maxConnections", UINT32_MAX),
        "maxPendingRequests": http.get("http1MaxPendingRequests", UINT32_MAX),
        "maxRequests": http.get("http2MaxRequests", UINT32_MAX),
        "maxRetries": http.get("maxRetries", UINT32_MAX),
        "trackRemaining": True,
    }


def build_inbound_cluster(instance: ServiceInstance, captured: bool = True) -> dict:
    """``inbound|<port>||``: under capture named by the target port, ORIGINAL_DST with the
    127.0.0.6 upstream bind; without, by the service port, STATIC to the app on the pod IP."""
    ep = instance.endpoint
    target = ep.endpoint_port or instance.port
    name = inbound_cluster_name(target if captured else instance.port)
    cluster: dict = {"name": name, "type": "ORIGINAL_DST" if captured else "STATIC",
                     "connectTimeout": DEFAULT_CONNECT_TIMEOUT, "commonLbConfig": {}}
    if captured:
        cluster["lbPolicy"] = "CLUSTER_PROVIDED"
        cluster["upstreamBindConfig"] = _bind_127_0_0_6()
    else:
        cluster["loadAssignment"] = {"clusterName": name, "endpoints": [{"lbEndpoints": [{"endpoint": {
            "address": {"socketAddress": {"address": ep.address, "portValue": ep.endpoint_port}}}}]}]}
    cluster["circuitBreakers"] = {"thresholds": [_thresholds({})]}
    service = instance.service
    cluster["metadata"] = {"filterMetadata": {"istio": {"services": [
        {"host": service.hostname, "name": service.name, "namespace": service.namespace}]}}}
    return cluster


def _bind_127_0_0_6() -> dict:
    return {"sourceAddress": {"address": INBOUND_PASSTHROUGH_BIND_IPV4, "portValue": 0}}


def blackhole_cluster() -> dict:
    """Where traffic for unknown destinations goes when the mesh allows only registered services."""
    return {"name": BLACKHOLE, "type": "STATIC", "connectTimeout": DEFAULT_CONNECT_TIMEOUT, "lbPolicy": "ROUND_ROBIN"}


def passthrough_cluster() -> dict:
    """Forward to the address the app asked for (``ORIGINAL_DST``), in the protocol it spoke
    (``passthroughHttpProtocolOptions``, cluster_builder.go#L76-L86). Without capture mesh's routes
    never use it — traffic must stay on loopback — but it is part of every sidecar's CDS, as in Istio."""
    return {"name": PASSTHROUGH, "type": "ORIGINAL_DST", "connectTimeout": DEFAULT_CONNECT_TIMEOUT,
            "lbPolicy": "CLUSTER_PROVIDED", "circuitBreakers": {"thresholds": [_thresholds({})]},
            "typedExtensionProtocolOptions": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": HTTP_PROTOCOL_OPTIONS_TYPE, "commonHttpProtocolOptions": {"idleTimeout": "300s"},
                "useDownstreamProtocolConfig": {"httpProtocolOptions": {}, "http2ProtocolOptions": {}}}}}


def inbound_passthrough_cluster() -> dict:
    """``InboundPassthroughClusterIpv4``: to the pod's own address and the port that was asked for."""
    cluster = passthrough_cluster()
    cluster["name"] = INBOUND_PASSTHROUGH_IPV4
    cluster["upstreamBindConfig"] = _bind_127_0_0_6()
    return cluster


def unique_ports(instances: list[ServiceInstance]) -> list[ServiceInstance]:
    seen: dict[int, ServiceInstance] = {}
    for inst in instances:
        seen.setdefault(inst.port, inst)
    return [seen[p] for p in sorted(seen)]


def unique_target_ports(instances: list[ServiceInstance]) -> list[ServiceInstance]:
    seen: dict[int, ServiceInstance] = {}
    for inst in instances:
        seen.setdefault(inst.endpoint.endpoint_port or inst.port, inst)
    return [seen[p] for p in sorted(seen)]
