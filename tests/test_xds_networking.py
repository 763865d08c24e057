"""The cluster, endpoint, listener and route builders, on an in-memory registry and config store."""

from __future__ import annotations

import pytest
from xds_fakes import FakeConfigStore, FakeRegistry, endpoint

from mesh.config.host import subset_of
from mesh.model.proxy import parse_node_id
from mesh.networking.cluster import build_sidecar_clusters, parse_cluster_name
from mesh.networking.endpoints import build_cluster_load_assignment
from mesh.networking.listener import build_sidecar_listeners
from mesh.networking.push_context import PushContext, resolve_short_name
from mesh.networking.route import (
    HTTP_PROXY_ROUTE,
    build_sidecar_route_config,
    convert_retry_policy,
    translate_fault,
    translate_match,
    virtual_host_domains,
)
from mesh.xds.resources import from_bytes, to_bytes
from mesh.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

REVIEWS = "reviews.default.svc.cluster.local"


@pytest.fixture
def world():
    reg, store = FakeRegistry(), FakeConfigStore()
    reg.add_service("reviews", vip="10.0.0.9")
    reg.add_service("ratings", namespace="other", ports=((9080, "http"), (9090, "grpc-x")))
    reg.add_service("productpage")
    reg.set_endpoints(REVIEWS, 9080, [
        endpoint("127.10.0.2", version="v1", locality="us/a"),
        endpoint("127.10.0.3", version="v2", locality="us/b"),
        endpoint("127.10.0.4", version="v2", locality="us/b"),
    ])
    reg.set_endpoints("productpage.default.svc.cluster.local", 9080, [endpoint("127.10.0.1", app="productpage")])
    store.apply("DestinationRule", "reviews", "default", {
        "host": "reviews",
        "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"},
                          "connectionPool": {"tcp": {"maxConnections": 7}, "http": {"http1MaxPendingRequests": 3}}},
        "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}, "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}}],
    })
    return reg, store


def sidecar(ip="127.10.0.1", pod="productpage-v1-x.default", labels=None, mode="NONE"):
    """A sidecar of mesh's loopback demo (no capture) unless ``mode`` says otherwise."""
    return parse_node_id(f"sidecar~{ip}~{pod}~default.svc.cluster.local",
                         {"LABELS": labels or {"app": "productpage"}, "NAMESPACE": "default", "INTERCEPTION_MODE": mode})


def ctx(world):
    return PushContext.build(*world, version="1")


def test_short_names_and_wildcards():
    assert resolve_short_name("reviews", "default") == REVIEWS
    assert resolve_short_name("reviews.default", "x") == "reviews.default"  # a dot: taken as written
    assert resolve_short_name("*", "x") == "*"
    assert subset_of(REVIEWS, "*.default.svc.cluster.local") and not subset_of(REVIEWS, "*.other.svc.cluster.local")


def test_clusters_have_istio_names_subsets_and_policies(world):
    push = ctx(world)
    proxy = sidecar()
    clusters = {c["name"]: c for c in build_sidecar_clusters(push, push.service_instances(proxy), captured=False)}
    assert {"outbound|9080||reviews.default.svc.cluster.local", "outbound|9080|v1|reviews.default.svc.cluster.local",
            "outbound|9080|v2|reviews.default.svc.cluster.local", "outbound|9090||ratings.other.svc.cluster.local",
            "inbound|9080||", "BlackHoleCluster", "PassthroughCluster"} <= set(clusters)
    default = clusters[f"outbound|9080||{REVIEWS}"]
    assert default["type"] == "EDS" and default["edsClusterConfig"]["serviceName"] == f"outbound|9080||{REVIEWS}"
    assert default["lbPolicy"] == "ROUND_ROBIN"
    assert default["circuitBreakers"]["thresholds"][0]["maxConnections"] == 7
    assert default["circuitBreakers"]["thresholds"][0]["maxPendingRequests"] == 3
    assert clusters[f"outbound|9080|v2|{REVIEWS}"]["lbPolicy"] == "RANDOM"  # the subset's policy wins
    assert clusters[f"outbound|9080|v1|{REVIEWS}"]["lbPolicy"] == "ROUND_ROBIN"  # inherited
    ratings = clusters["outbound|9080||ratings.other.svc.cluster.local"]
    assert ratings["lbPolicy"] == "LEAST_REQUEST"  # Istio's default without a rule
    inbound = clusters["inbound|9080||"]["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]
    assert inbound["endpoint"]["address"]["socketAddress"] == {"address": "127.10.0.1", "portValue": 9080}
    # Every cluster is a valid Envoy Cluster message (round trip through betterproto2).
    for c in clusters.values():
        assert from_bytes(CLUSTER, to_bytes(CLUSTER, c))["name"] == c["name"]


def test_parse_cluster_name():
    assert parse_cluster_name(f"outbound|9080|v1|{REVIEWS}") == ("outbound", 9080, "v1", REVIEWS)
    with pytest.raises(ValueError):
        parse_cluster_name("BlackHoleCluster")


def test_endpoints_follow_subset_labels_and_group_by_locality(world):
    push = ctx(world)
    cla = build_cluster_load_assignment(push, f"outbound|9080|v2|{REVIEWS}")
    assert len(cla["endpoints"]) == 1
    group = cla["endpoints"][0]
    assert group["locality"] == {"region": "us", "zone": "b"} and group["loadBalancingWeight"] == 2
    assert [e["endpoint"]["address"]["socketAddress"]["address"] for e in group["lbEndpoints"]] == \
        ["127.10.0.3", "127.10.0.4"]
    whole = build_cluster_load_assignment(push, f"outbound|9080||{REVIEWS}")
    assert [g["locality"]["zone"] for g in whole["endpoints"]] == ["a", "b"]
    assert build_cluster_load_assignment(push, f"outbound|9080|v9|{REVIEWS}")["endpoints"] == []  # unknown subset
    assert build_cluster_load_assignment(push, "outbound|1|x|nope")["endpoints"] == []
    assert from_bytes(ENDPOINT, to_bytes(ENDPOINT, whole))["clusterName"] == whole["clusterName"]


def test_domains_depend_on_the_callers_namespace(world):
    svc = world[0].get_service(REVIEWS)
    # generateVirtualHostDomains and generateAltVirtualHostsForKubernetesService:
    # https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/httproute.go#L553-L655
    # for http_proxy (listener port 0) every name comes bare and with its port ...
    same = virtual_host_domains(svc, 9080, "default.svc.cluster.local")
    assert same == [REVIEWS, f"{REVIEWS}:9080", "reviews", "reviews:9080", "reviews.default.svc",
                    "reviews.default.svc:9080", "reviews.default", "reviews.default:9080", "10.0.0.9", "10.0.0.9:9080"]
    other = virtual_host_domains(svc, 9080, "other.svc.cluster.local")
    assert "reviews:9080" not in other and "reviews.default:9080" in other and "reviews.default" in other
    # ... for a per-port route config bare only, as it ignores the port (httproute.go#L554-L557)
    assert virtual_host_domains(svc, 9080, "default.svc.cluster.local", listener_port=9080) == [
        REVIEWS, "reviews", "reviews.default.svc", "reviews.default", "10.0.0.9"]


def test_route_config_without_virtual_services(world):
    push = ctx(world)
    rc = build_sidecar_route_config(push, sidecar(), HTTP_PROXY_ROUTE)
    names = [v["name"] for v in rc["virtualHosts"]]
    assert f"{REVIEWS}:9080" in names and "ratings.other.svc.cluster.local:9080" in names
    assert "ratings.other.svc.cluster.local:9090" not in names  # a TCP port: no HTTP route
    assert names[-1] == "block_all"
    vh = rc["virtualHosts"][names.index(f"{REVIEWS}:9080")]
    assert vh["routes"][0]["name"] == "default"
    assert vh["routes"][0]["route"]["cluster"] == f"outbound|9080||{REVIEWS}"
    assert vh["routes"][0]["route"]["retryPolicy"]["numRetries"] == 2
    assert build_sidecar_route_config(push, sidecar(), "9080")["ignorePortInHostMatching"] is True
    assert build_sidecar_route_config(push, sidecar(), "nonsense") is None
    assert from_bytes(ROUTE, to_bytes(ROUTE, rc))["name"] == HTTP_PROXY_ROUTE


def test_virtual_service_routes(world):
    reg, store = world
    store.apply("VirtualService", "reviews", "default", {"hosts": ["reviews"], "http": [
        {"name": "jason", "match": [{"name": "user", "headers": {"end-user": {"exact": "jason"}}}],
         "route": [{"destination": {"host": "reviews", "subset": "v2"}}], "timeout": "3s",
         "retries": {"attempts": 5, "retryOn": "5xx,503", "perTryTimeout": "1s"}},
        {"name": "split", "route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 75},
                                    {"destination": {"host": "reviews", "subset": "v2"}, "weight": 25}]},
        {"name": "never", "route": [{"destination": {"host": "reviews"}}]},  # after a catch-all: dropped
    ]})
    push = ctx(world)
    rc = build_sidecar_route_config(push, sidecar(), HTTP_PROXY_ROUTE)
    vh = next(v for v in rc["virtualHosts"] if v["name"] == f"{REVIEWS}:9080")
    assert [r["name"] for r in vh["routes"]] == ["jason.user", "split"]
    jason, split = vh["routes"]
    assert jason["match"]["headers"] == [{"name": "end-user", "stringMatch": {"exact": "jason"}}]
    assert jason["route"]["cluster"] == f"outbound|9080|v2|{REVIEWS}" and jason["route"]["timeout"] == "3s"
    retry = jason["route"]["retryPolicy"]
    assert retry["numRetries"] == 5 and retry["retriableStatusCodes"] == [503] and retry["perTryTimeout"] == "1s"
    assert "5xx" in retry["retryOn"].split(",") and "retriable-status-codes" in retry["retryOn"].split(",")
    assert split["route"]["weightedClusters"]["clusters"] == [
        {"name": f"outbound|9080|v1|{REVIEWS}", "weight": 75}, {"name": f"outbound|9080|v2|{REVIEWS}", "weight": 25}]
    assert from_bytes(ROUTE, to_bytes(ROUTE, rc))["virtualHosts"]


def test_source_labels_and_gateways_scope_routes(world):
    reg, store = world
    store.apply("VirtualService", "reviews", "default", {"hosts": ["reviews"], "http": [
        {"name": "from-v2", "match": [{"sourceLabels": {"version": "v2"}}],
         "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
        {"name": "rest", "route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]})
    store.apply("VirtualService", "gw-only", "default", {"hosts": ["productpage"], "gateways": ["bookinfo-gateway"],
                                                          "http": [{"route": [{"destination": {"host": "reviews"}}]}]})
    push = ctx(world)

    def routes(labels, host=REVIEWS):
        rc = build_sidecar_route_config(push, sidecar(labels=labels), HTTP_PROXY_ROUTE)
        return [r["name"] for v in rc["virtualHosts"] if v["name"] == f"{host}:9080" for r in v["routes"]]

    assert routes({"app": "x", "version": "v2"}) == ["from-v2", "rest"]
    assert routes({"app": "x", "version": "v1"}) == ["rest"]
    assert routes({}, "productpage.default.svc.cluster.local") == ["default"]  # gateway-only VS ignored


def test_match_fault_retry_translation():
    m = translate_match({"uri": {"regex": "/a.*"}, "ignoreUriCase": True, "method": {"exact": "GET"},
                         "withoutHeaders": {"x-test": {"prefix": "y"}}, "queryParams": {"q": {"exact": "1"}}})
    assert m["safeRegex"] == {"regex": "/a.*"} and m["caseSensitive"] is False
    assert {"name": ":method", "stringMatch": {"exact": "GET"}} in m["headers"]
    assert {"name": "x-test", "stringMatch": {"prefix": "y"}, "invertMatch": True} in m["headers"]
    assert m["queryParameters"] == [{"name": "q", "stringMatch": {"exact": "1"}}]
    assert translate_match({}) == {"prefix": "/"}
    f = translate_fault({"delay": {"fixedDelay": "2s", "percentage": {"value": 12.5}}, "abort": {"httpStatus": 503}})
    assert f["delay"]["percentage"] == {"numerator": 125000, "denominator": "MILLION"}
    assert f["abort"] == {"httpStatus": 503, "percentage": {"numerator": 100, "denominator": "HUNDRED"}}
    assert convert_retry_policy({"attempts": 0}) is None
    assert convert_retry_policy(None)["numRetries"] == 2


def test_listeners_bind_the_pod_ip(world):
    push = ctx(world)
    proxy = sidecar()
    listeners = {li["name"]: li for li in build_sidecar_listeners(proxy, push, push.service_instances(proxy))}
    assert set(listeners) == {"127.10.0.1_15080", "virtualInbound"}
    out = listeners["127.10.0.1_15080"]
    hcm = out["filterChains"][0]["filters"][0]["typedConfig"]
    assert hcm["rds"]["routeConfigName"] == HTTP_PROXY_ROUTE
    # listener_builder.go#L387-L414 without istio-proxy's own filters
    assert [f["name"] for f in hcm["httpFilters"]] == ["envoy.filters.http.grpc_stats", "envoy.filters.http.fault",
                                                      "envoy.filters.http.cors", "envoy.filters.http.router"]
    inbound = listeners["virtualInbound"]
    assert inbound["address"]["socketAddress"] == {"address": "127.10.0.1", "portValue": 15006}
    for li in listeners.values():
        assert from_bytes(LISTENER, to_bytes(LISTENER, li))["name"] == li["name"]
    # A pod that backs no service gets no inbound listener.
    lonely = sidecar(ip="127.10.0.99", pod="client.default")
    assert [li["name"] for li in build_sidecar_listeners(lonely, push, push.service_instances(lonely))] == [
        "127.10.0.99_15080"]


def gateway_proxy(labels=None):
    return parse_node_id("router~127.10.0.50~ingress-1.istio-system~istio-system.svc.cluster.local",
                         {"LABELS": labels or {"istio": "ingressgateway"}, "NAMESPACE": "istio-system",
                          "INTERCEPTION_MODE": "NONE"})


def test_gateway_listeners_and_routes(world):
    from mesh.networking.gateway import build_gateway_listeners, build_gateway_route_config, intersect_hosts

    reg, store = world
    store.apply("Gateway", "bookinfo-gateway", "default", {"selector": {"istio": "ingressgateway"}, "servers": [
        {"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]},
        {"port": {"number": 8443, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"]}]})  # skipped: no TLS
    store.apply("VirtualService", "bookinfo", "default", {"hosts": ["*"], "gateways": ["bookinfo-gateway"], "http": [
        {"name": "pages", "match": [{"uri": {"exact": "/productpage"}}],
         "route": [{"destination": {"host": "productpage", "port": {"number": 9080}}}]},
        {"name": "mesh-only", "match": [{"gateways": ["mesh"]}], "route": [{"destination": {"host": "reviews"}}]}]})
    push = ctx(world)
    gw = gateway_proxy()
    listeners = build_gateway_listeners(push, gw)
    assert [li["name"] for li in listeners] == ["127.10.0.50_8080"]
    hcm = listeners[0]["filterChains"][0]["filters"][0]["typedConfig"]
    assert hcm["rds"]["routeConfigName"] == "http.8080"
    rc = build_gateway_route_config(push, gw, "http.8080")
    assert [v["name"] for v in rc["virtualHosts"]] == ["*:8080"]
    routes = rc["virtualHosts"][0]["routes"]
    assert [r["name"] for r in routes] == ["pages"]  # the mesh-only match is not the gateway's
    assert routes[0]["route"]["cluster"] == "outbound|9080||productpage.default.svc.cluster.local"
    assert from_bytes(ROUTE, to_bytes(ROUTE, rc))["name"] == "http.8080"
    # Another gateway's proxy gets nothing from this Gateway; an unknown port gets a 404 host.
    assert build_gateway_listeners(push, gateway_proxy({"istio": "egressgateway"})) == []
    assert build_gateway_route_config(push, gw, "http.9999")["virtualHosts"][0]["name"] == "blackhole:9999"
    assert intersect_hosts(["*"], ["bookinfo.com"]) == ["bookinfo.com"]
    assert intersect_hosts(["*.example.com"], ["a.example.com", "b.other.com"]) == ["a.example.com"]
    # The sidecar does not see a VirtualService bound only to a gateway.
    sidecar_rc = build_sidecar_route_config(push, sidecar(), HTTP_PROXY_ROUTE)
    vh = next(v for v in sidecar_rc["virtualHosts"] if v["name"] == "productpage.default.svc.cluster.local:9080")
    assert [r["name"] for r in vh["routes"]] == ["default"]
