"""Cluster builder: CDS for a sidecar — one outbound cluster per service port and subset.

Go: ``BuildClusters`` / ``buildOutboundClusters``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/cluster.go#L311-L392,
per service port the default cluster ``buildDefaultCluster``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/cluster_builder.go#L361-L431
with its upstream protocol ``setUpstreamProtocol`` (#L1273-L1293), the DestinationRule applied
``applyDestinationRule`` (#L252-L304) and one cluster per subset ``buildSubsetCluster``
(#L182-L250); the discovery type ``convertResolution`` (cluster.go#L667-L687), the default
circuit-breaker thresholds (cluster.go#L62-L76) and the BlackHole / Passthrough clusters
(cluster_builder.go#L683-L709). The traffic policy itself — which one applies (top level, port
level, subset), connection pools, outlier detection, load balancers — is
``networking/cluster_traffic_policy.py``; its ``tls`` is ``networking/cluster_tls.py``.

Names are Istio's, because every tool reads them: ``outbound|9080|v1|reviews.default.svc.cluster.local``
is direction, port, subset (empty for the whole service) and host. The EDS service name of a
cluster is the cluster name itself, so EDS can look the service and subset back up from it.

Auto mTLS (``buildAutoMtlsSettings``, cluster_builder.go#L801-L849): for a proxy whose agent
serves it a workload certificate over SDS, every EDS cluster of an in-mesh service whose rule sets
no ``tls`` gets ``transportSocketMatches`` — mutual TLS to endpoints marked ``tlsMode: istio``,
plaintext to the rest — checking the server against the service's SPIFFE identities
(``networking/tls.py``).

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

A Sidecar with ``ingress`` listeners gets one ``inbound|<port>||`` per listener instead
(``buildInboundClusters``, cluster.go#L545-L645), see ``build_ingress_clusters``.

Gateways get no PassthroughCluster: they have no original-destination listener (cluster.go#L266-L269).

Simplifications, named: IPv4 only; DNS clusters carry neither ``dns_lookup_family`` nor the
mesh's DNS refresh rate, and a DNS subset keeps the service's one hostname endpoint rather than
filtering by the subset's labels; a headless service's cluster stays ORIGINAL_DST for gateways too
(Istio makes it EDS there, cluster.go#L676-L679); no ``alt_stat_name`` (MeshConfig
``outboundClusterStatName``) and no metadata-exchange cluster filter (stock Envoy has none); inbound
clusters take no DestinationRule policy. The DestinationRule for a host is the one the proxy's
SidecarScope picks (``push.destination_rule``: merged, workload-selected for this proxy's labels);
the named simplifications of the policy and TLS modules apply here too.
"""

from __future__ import annotations

from collections.abc import Callable

from mesh.model.config import Config
from mesh.model.service import Port, Resolution, Service, ServiceProtocol
from mesh.networking.cluster_tls import alpn_override_metadata, apply_upstream_tls, auto_mtls_settings
from mesh.networking.cluster_traffic_policy import (
    MutableCluster,
    apply_connection_pool,
    apply_h2_upgrade,
    apply_load_balancer,
    apply_outlier_detection,
    default_thresholds,
    merge_traffic_policy,
    set_h2_options,
    set_use_downstream_protocol,
)
from mesh.networking.extensions import HTTP_PROTOCOL_OPTIONS_TYPE
from mesh.networking.push_context import PushContext, ServiceInstance
from mesh.networking.tls import outbound_sni

DEFAULT_CONNECT_TIMEOUT = "10s"  # MeshConfig.connectTimeout
BLACKHOLE = "BlackHoleCluster"
PASSTHROUGH = "PassthroughCluster"
INBOUND_PASSTHROUGH_IPV4 = "InboundPassthroughClusterIpv4"
INBOUND_PASSTHROUGH_BIND_IPV4 = "127.0.0.6"  # listener_address.go#L36
LOCALHOST = "127.0.0.1"



_HTTP2_PROTOCOLS = (ServiceProtocol.HTTP2, ServiceProtocol.GRPC, ServiceProtocol.GRPC_WEB)  # Instance.IsHTTP2


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


def inbound_clusters_key(instances: list[ServiceInstance], captured: bool) -> tuple:
    """What ``build_inbound_clusters`` reads from the instances when the Sidecar has no ingress
    listeners: proxies with equal keys get equal clusters (every pod of a service when captured;
    every proxy with no instances), so a push can build and encode them once (``mesh.xds.cds``)."""
    picked = unique_target_ports(instances) if captured else unique_ports(instances)
    return (captured, tuple((i.port, i.endpoint.endpoint_port, "" if captured else i.endpoint.address,
                             i.service.hostname, i.service.name, i.service.namespace) for i in picked))


def build_inbound_clusters(instances: list[ServiceInstance], captured: bool, ingress: list[dict] | None = None,
                           proxy_ips: list[str] | tuple[str, ...] = (), sidecar: tuple[str, str] = ("", "")) -> list[dict]:
    """``buildInboundClusters``: one per target port — or, when the proxy's Sidecar has ``ingress``
    listeners, one per ingress listener instead — then the passthrough (capture only)."""
    if ingress:
        clusters = build_ingress_clusters(ingress, instances, proxy_ips, *sidecar)
    elif captured:
        clusters = [build_inbound_cluster(i, True) for i in unique_target_ports(instances)]
    else:
        return [build_inbound_cluster(i, False) for i in unique_ports(instances)]
    return clusters + [inbound_passthrough_cluster()] if captured else clusters


def build_ingress_clusters(ingress: list[dict], instances: list[ServiceInstance], proxy_ips,
                           sidecar_name: str, sidecar_namespace: str) -> list[dict]:
    """``inbound|<port>||`` per Sidecar ingress listener (cluster.go#L575-L643). Its
    ``defaultEndpoint`` says where traffic goes: none → ORIGINAL_DST (where it was going);
    ``127.0.0.1:<p>`` (or ``[::1]:<p>``) → STATIC to localhost; ``0.0.0.0:<p>`` → STATIC to the
    pod's IPv4 address; ``unix://...`` → that socket. Only a localhost endpoint goes without the
    127.0.0.6 upstream bind. The service named in metadata is the instance on that port, else the
    synthetic ``<sidecar>.<namespace>`` (``findOrCreateService``)."""
    out = []
    for listener in ingress:
        number = int((listener.get("port") or {}).get("number") or 0)
        target = (listener.get("defaultEndpoint") or "").strip()
        where, port = "", 0
        if target.startswith("unix://"):
            where = target
        elif target:
            host, _, port_text = target.rpartition(":")
            if not port_text.isdigit():
                continue
            port, host = int(port_text), host.strip("[]")
            if host == "0.0.0.0":
                where = next((a for a in proxy_ips if a.count(".") == 3), LOCALHOST)
            elif host == "::":
                where = next((a for a in proxy_ips if ":" in a), "::1")
            elif host in (LOCALHOST, "::1"):
                where = LOCALHOST  # the proxy's first local host (IPv4 here)
        instance = next((i for i in instances if i.endpoint.endpoint_port == number), None)
        service = instance.service if instance is not None else Service(
            hostname=f"{sidecar_name}.{sidecar_namespace}", name=sidecar_name, namespace=sidecar_namespace, ports=[])
        out.append(inbound_cluster(inbound_cluster_name(number), where, port, service,
                                   upstream_bind=where not in (LOCALHOST, "::1")))
    return out


def build_outbound_clusters(push: PushContext, service: Service, auto_mtls: bool = False,
                            sidecar: bool = True) -> list[dict]:
    """``buildOutboundClusters`` for one service: per port the whole-service cluster, then one
    per subset of its DestinationRule. ``auto_mtls``: the proxy has a workload certificate (SDS),
    so in-mesh clusters may use it unasked; ``sidecar``: False for a gateway."""
    rule = push.destination_rule(service.hostname)
    spec = rule.spec if rule is not None else {}
    out = []
    for port in service.ports:
        if port.protocol == "UDP":
            continue
        build = _OutboundBuild(service, port, rule, auto_mtls, sidecar,
                               lambda p=port.port: service_identities(push, service, p))
        policy = merge_traffic_policy(None, spec.get("trafficPolicy"), port.port)
        default = build.cluster("", policy, _discovery_type(service))
        out.append(default)
        for subset in spec.get("subsets") or []:
            # a subset starts from the type its service's cluster ended with, unless its own
            # policy says PASSTHROUGH (cluster_builder.go#L198-L202)
            own_lb = (subset.get("trafficPolicy") or {}).get("loadBalancer") or {}
            kind = "ORIGINAL_DST" if own_lb.get("simple") == "PASSTHROUGH" else default["type"]
            merged = merge_traffic_policy(policy, subset.get("trafficPolicy"), port.port)
            out.append(build.cluster(subset.get("name", ""), merged, kind))
    return out


def service_identities(push: PushContext, service: Service, port: int) -> list[str]:
    """The SPIFFE identities a server for this service port may present: the service's own
    (``canonical-service-accounts`` and friends) and those of the pods behind it
    (``PushContext.ServiceAccounts``)."""
    found = set(service.service_accounts)
    found.update(ep.service_account for ep in push.endpoints(service.hostname, port) if ep.service_account)
    return sorted(found)


def _discovery_type(service: Service) -> str:
    """``convertResolution`` (cluster.go#L667-L687) for a sidecar."""
    if service.resolution == Resolution.CLIENT_SIDE_LB:
        return "EDS"
    if service.resolution == Resolution.PASSTHROUGH:
        return "ORIGINAL_DST"
    return "STRICT_DNS" if service.resolution == Resolution.DNS_LB else "LOGICAL_DNS"


class _OutboundBuild:
    """The clusters of one service port: ``buildDefaultCluster`` then ``applyDestinationRule``
    (cluster_builder.go#L254-L304) or ``buildSubsetCluster`` (#L182-L250)."""

    def __init__(self, service: Service, port: Port, rule: Config | None, auto_mtls: bool, sidecar: bool,
                 find_accounts: Callable[[], list[str]]):
        self.service, self.port, self.rule = service, port, rule
        self.auto_mtls, self.sidecar = auto_mtls, sidecar
        self._find_accounts, self._accounts = find_accounts, None

    def service_accounts(self) -> list[str]:
        """Looked up only when TLS needs them (they cost a pass over the endpoints), once per port."""
        if self._accounts is None:
            self._accounts = self._find_accounts()
        return self._accounts

    def cluster(self, subset: str, policy: dict | None, kind: str) -> dict:
        service, port = self.service, self.port
        name = outbound_cluster_name(port.port, subset, service.hostname)
        mc = MutableCluster({"name": name, "connectTimeout": DEFAULT_CONNECT_TIMEOUT, "commonLbConfig": {},
                             "type": kind})
        cluster = mc.cluster
        if kind in ("STRICT_DNS", "LOGICAL_DNS"):  # Envoy resolves the host itself
            target = service.external_name or service.hostname
            cluster["loadAssignment"] = {"clusterName": name, "endpoints": [{"lbEndpoints": [{"endpoint": {
                "address": {"socketAddress": {"address": target, "portValue": port.port}}}}]}]}
        # setUpstreamProtocol (cluster_builder.go#L1273-L1293): HTTP/2 ports speak it upstream; a
        # sniffed port on a sidecar speaks whatever the caller spoke
        if port.protocol in _HTTP2_PROTOCOLS:  # as a string too: some callers build Ports by hand
            set_h2_options(mc)
        elif self.sidecar and port.protocol == ServiceProtocol.UNSUPPORTED:
            set_use_downstream_protocol(mc)
        metadata: dict = {"services": [{"host": service.hostname, "name": service.name,
                                        "namespace": service.namespace}]}
        self._apply_traffic_policy(mc, subset, policy or {})
        if cluster["type"] == "EDS":  # maybeApplyEdsConfig: after the policy, which may change the type
            cluster["edsClusterConfig"] = {"edsConfig": {"ads": {}, "initialFetchTimeout": "0s",
                                                         "resourceApiVersion": "V3"}, "serviceName": name}
        if self.rule is not None:
            if subset:
                metadata["subset"] = subset
            metadata["config"] = (f"/apis/networking.istio.io/v1alpha3/namespaces/{self.rule.namespace}"
                                  f"/destination-rule/{self.rule.name}")
            alpn_override_metadata(metadata, (policy or {}).get("tls"))
        cluster["metadata"] = {"filterMetadata": {"istio": metadata}}
        return mc.build()

    def _apply_traffic_policy(self, mc: MutableCluster, subset: str, policy: dict) -> None:
        """``applyTrafficPolicy`` (cluster_builder.go#L774-L796), in its order: the HTTP/2 choice
        must be settled before TLS picks its ALPN."""
        pool = policy.get("connectionPool") or {}
        apply_connection_pool(mc, pool, DEFAULT_CONNECT_TIMEOUT)
        apply_h2_upgrade(mc, pool)
        apply_outlier_detection(mc.cluster, policy.get("outlierDetection"))
        apply_load_balancer(mc.cluster, policy.get("loadBalancer"))
        tls_policy = policy.get("tls")
        in_mesh_eds = mc.cluster["type"] == "EDS" and not self.service.mesh_external
        needs_accounts = self.auto_mtls and in_mesh_eds if tls_policy is None else (
            tls_policy.get("mode") in ("ISTIO_MUTUAL", "SIMPLE", "MUTUAL"))
        accounts = self.service_accounts() if needs_accounts else []
        tls, auto_detected = auto_mtls_settings(
            tls_policy, accounts, outbound_sni(self.port.port, subset, self.service.hostname),
            self.auto_mtls and in_mesh_eds)
        apply_upstream_tls(mc, tls, auto_detected, self.sidecar,
                           bool(self.rule is not None and self.rule.spec.get("workloadSelector")),
                           external_registry=self.service.registry == "External", service_accounts=accounts)
        if mc.cluster["type"] == "ORIGINAL_DST":
            mc.cluster["lbPolicy"] = "CLUSTER_PROVIDED"


def build_inbound_cluster(instance: ServiceInstance, captured: bool = True) -> dict:
    """``inbound|<port>||``: under capture named by the target port, ORIGINAL_DST with the
    127.0.0.6 upstream bind; without, by the service port, STATIC to the app on the pod IP."""
    ep = instance.endpoint
    target = ep.endpoint_port or instance.port
    if captured:
        return inbound_cluster(inbound_cluster_name(target), "", 0, instance.service, upstream_bind=True)
    return inbound_cluster(inbound_cluster_name(instance.port), ep.address, ep.endpoint_port, instance.service,
                           upstream_bind=False)


def inbound_cluster(name: str, where: str, port: int, service: Service, upstream_bind: bool) -> dict:
    """``buildInboundClusterForPortOrUDS``: STATIC to ``where:port`` (a ``unix://`` path: that
    socket), or ORIGINAL_DST when ``where`` is empty; ``upstream_bind``: from 127.0.0.6."""
    cluster: dict = {"name": name, "type": "STATIC" if where else "ORIGINAL_DST",
                     "connectTimeout": DEFAULT_CONNECT_TIMEOUT, "commonLbConfig": {}}
    if not where:
        cluster["lbPolicy"] = "CLUSTER_PROVIDED"
    else:
        addr = ({"pipe": {"path": where.removeprefix("unix://")}} if where.startswith("unix://")
                else {"socketAddress": {"address": where, "portValue": port}})
        cluster["loadAssignment"] = {"clusterName": name, "endpoints": [{"lbEndpoints": [{"endpoint": {
            "address": addr}}]}]}
    if upstream_bind:
        cluster["upstreamBindConfig"] = _bind_127_0_0_6()
    cluster["circuitBreakers"] = {"thresholds": [default_thresholds()]}
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
            "lbPolicy": "CLUSTER_PROVIDED", "circuitBreakers": {"thresholds": [default_thresholds()]},
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
