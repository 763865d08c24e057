"""Gateway config without Envoy: port translation (``resolvePorts``) and the egress-gateway pattern,
on an in-memory registry and config store (the real-Envoy side is tests/test_gateways_envoy.py)."""

from __future__ import annotations

import pytest
from xds_fakes import FakeConfigStore, FakeRegistry, endpoint

from mesh.model.proxy import parse_node_id
from mesh.model.service import Port, Service, ServiceProtocol
from mesh.networking.gateway import build_gateway_listeners, build_gateway_route_config
from mesh.networking.push_context import PushContext
from mesh.networking.route import HTTP_PROXY_ROUTE, build_sidecar_route_config

EGRESS_SVC = "istio-egressgateway.istio-system.svc.cluster.local"
EGRESS_IP = "127.10.0.60"
EXTERNAL = "httpbin.example.com"


@pytest.fixture
def world():
    reg, store = FakeRegistry(), FakeConfigStore()
    reg.add_service("istio-egressgateway", namespace="istio-system", ports=((80, "http2"), (443, "https")))
    # The Service maps 80 → targetPort 8080 and 443 → 8443: the endpoints carry the target ports.
    reg.set_endpoints(EGRESS_SVC, 80, [endpoint(EGRESS_IP, 8080, app="istio-egressgateway")])
    reg.set_endpoints(EGRESS_SVC, 443, [endpoint(EGRESS_IP, 8443, app="istio-egressgateway")])
    reg.add_service("productpage")
    # What the ServiceEntry registry makes of the trace's ServiceEntry (a host outside the cluster).
    reg._services[EXTERNAL] = Service(hostname=EXTERNAL, namespace="default", name=EXTERNAL,
                                      ports=[Port("http", 80, ServiceProtocol.HTTP)], mesh_external=True)
    store.apply("Gateway", "istio-egressgateway", "default", {"selector": {"istio": "egressgateway"}, "servers": [
        {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": [EXTERNAL]}]})
    store.apply("VirtualService", "via-egress", "default", {
        "hosts": [EXTERNAL], "gateways": ["istio-egressgateway", "mesh"], "http": [
            {"name": "to-gateway", "match": [{"gateways": ["mesh"], "port": 80}],
             "route": [{"destination": {"host": EGRESS_SVC, "subset": "httpbin", "port": {"number": 80}}}]},
            {"name": "to-external", "match": [{"gateways": ["istio-egressgateway"], "port": 80}],
             "route": [{"destination": {"host": EXTERNAL, "port": {"number": 80}}}]}]})
    return reg, store


def egress_proxy(ip=EGRESS_IP):
    return parse_node_id(f"router~{ip}~istio-egressgateway-1.istio-system~istio-system.svc.cluster.local",
                         {"LABELS": {"istio": "egressgateway"}, "NAMESPACE": "istio-system",
                          "INTERCEPTION_MODE": "NONE"})  # the loopback demo's gateway binds its pod IP


def test_a_service_port_is_listened_on_at_its_target_port(world):
    push = PushContext.build(*world, version="1")
    [listener] = build_gateway_listeners(push, egress_proxy())
    assert listener["address"]["socketAddress"] == {"address": EGRESS_IP, "portValue": 8080}
    hcm = listener["filterChains"][0]["filters"][0]["typedConfig"]
    assert hcm["rds"]["routeConfigName"] == "http.8080"
    # The routes still speak of the Gateway's port 80: the virtual host name and `match.port: 80`.
    rc = build_gateway_route_config(push, egress_proxy(), "http.8080")
    [vhost] = rc["virtualHosts"]
    assert (vhost["name"], vhost["domains"]) == (f"{EXTERNAL}:80", [EXTERNAL])
    assert [(r["name"], r["route"]["cluster"]) for r in vhost["routes"]] == [("to-external", f"outbound|80||{EXTERNAL}")]
    assert build_gateway_route_config(push, egress_proxy(), "http.80")["virtualHosts"][0]["name"] == "blackhole:80"


def test_a_port_no_service_has_is_listened_on_as_written(world):
    reg, store = world
    store.apply("Gateway", "istio-egressgateway", "default", {"selector": {"istio": "egressgateway"}, "servers": [
        {"port": {"number": 9000, "name": "http", "protocol": "HTTP"}, "hosts": [EXTERNAL]}]})
    push = PushContext.build(reg, store, version="1")
    assert [li["name"] for li in build_gateway_listeners(push, egress_proxy())] == [f"{EGRESS_IP}_9000"]
    # A gateway pod that backs no Service (not in any endpoints yet) also takes the port as written.
    assert [li["name"] for li in build_gateway_listeners(push, egress_proxy("127.10.0.61"))] == ["127.10.0.61_9000"]
    # The routes match port 80 only: nothing for a server on 9000.
    [vhost] = build_gateway_route_config(push, egress_proxy(), "http.9000")["virtualHosts"]
    assert vhost["routes"] == []


def test_sidecars_send_the_external_host_to_the_egress_gateway(world):
    push = PushContext.build(*world, version="1")
    sidecar = parse_node_id("sidecar~127.10.0.1~productpage-1.default~default.svc.cluster.local",
                            {"LABELS": {"app": "productpage"}, "NAMESPACE": "default"})
    rc = build_sidecar_route_config(push, sidecar, HTTP_PROXY_ROUTE)
    vhost = next(v for v in rc["virtualHosts"] if v["name"] == f"{EXTERNAL}:80")
    assert EXTERNAL in vhost["domains"] and f"{EXTERNAL}:80" in vhost["domains"]
    assert [(r["name"], r["route"]["cluster"]) for r in vhost["routes"]] == [
        ("to-gateway", f"outbound|80|httpbin|{EGRESS_SVC}")]
