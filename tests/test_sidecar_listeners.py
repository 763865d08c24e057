"""A Sidecar's ingress and egress *listeners*, through the real generators on the virtual clock's
objects (no server): ingress listeners replace the inbound side built from Service ports, and an
egress listener with a port gets its own listener and a route configuration with only its hosts.

Every Sidecar here passes mesh's validation first (Istio's rules, ``mesh/config/validation``), so
the generators are only ever given what istiod would accept. Istio's ``TestIstioEgressListenerWrapper``
table is read from ``ISTIO_SRC`` (``istio_go``) and replayed against ``select_services``.
"""

from __future__ import annotations

import re

import istio_go
import istio_src
import pytest
from xds_fakes import FakeConfigStore, FakeRegistry, endpoint

from mesh.config.validation import errors, validate
from mesh.model.proxy import parse_node_id
from mesh.model.service import Port, Service, ServiceProtocol
from mesh.networking.push_context import PushContext
from mesh.networking.sidecar import select_services
from mesh.xds.cds import CdsGenerator
from mesh.xds.generator import ProxyState, WatchedResource, scoped
from mesh.xds.lds import LdsGenerator
from mesh.xds.proxy_dependencies import compute_proxy_state
from mesh.xds.rds import RdsGenerator
from mesh.xds.types import CLUSTER, LISTENER, ROUTE

POD_IP = "10.244.0.5"
REVIEWS, RATINGS, PRODUCTPAGE = (f"{n}.default.svc.cluster.local" for n in ("reviews", "ratings", "productpage"))


@pytest.fixture
def world():
    reg, store = FakeRegistry(), FakeConfigStore()
    reg.add_service("productpage", vip="10.96.0.10")
    reg.add_service("reviews", vip="10.96.0.11")
    reg.add_service("ratings", vip="10.96.0.12")
    reg.add_service("mongodb", ports=((27017, "tcp"),), vip="10.96.0.13")
    reg.set_endpoints(PRODUCTPAGE, 9080, [endpoint(POD_IP, app="productpage")])
    return reg, store


def apply_sidecar(store, spec: dict, name: str = "productpage") -> None:
    spec = {"workloadSelector": {"labels": {"app": "productpage"}}, **spec}
    obj = {"apiVersion": "networking.istio.io/v1beta1", "kind": "Sidecar",
           "metadata": {"name": name, "namespace": "default"}, "spec": spec}
    assert not errors(validate(obj)), errors(validate(obj))
    store.apply("Sidecar", name, "default", spec)


def proxy(mode: str = "REDIRECT", ip: str = POD_IP):
    return parse_node_id(f"sidecar~{ip}~productpage-v1.default~default.svc.cluster.local",
                         {"LABELS": {"app": "productpage"}, "NAMESPACE": "default", "INTERCEPTION_MODE": mode})


def generate(push, p, generator, type_url, names=()):
    state = ProxyState(p)
    compute_proxy_state(state, push, None)
    out = generator.generate(state, scoped(push, state), WatchedResource(type_url, names=list(names)), None)
    return {r.name: r.body for r in out}


def chain_names(listener: dict) -> list[str]:
    return [c.get("name", "") for c in listener["filterChains"]]


# -- ingress ----------------------------------------------------------------------------------

def test_ingress_listeners_replace_the_service_ports_inbound(world):
    reg, store = world
    apply_sidecar(store, {"ingress": [
        {"port": {"number": 9081, "protocol": "HTTP", "name": "http"}, "defaultEndpoint": "0.0.0.0:9080"},
        {"port": {"number": 9082, "protocol": "TCP", "name": "tcp"}, "defaultEndpoint": "127.0.0.1:9080"},
        {"port": {"number": 9083, "protocol": "HTTP", "name": "passthrough"}}]})
    push = PushContext.build(reg, store)
    listeners = generate(push, proxy(), LdsGenerator(), LISTENER)
    inbound = listeners["virtualInbound"]
    # the chains name the pod's own (global unicast) address, as getSidecarInboundBindIPs does
    ports = {c["filterChainMatch"].get("destinationPort"): c["name"] for c in inbound["filterChains"]
             if c["name"].startswith(POD_IP)}
    assert ports == {9081: f"{POD_IP}_9081", 9082: f"{POD_IP}_9082", 9083: f"{POD_IP}_9083"}
    assert "0.0.0.0_9080" not in chain_names(inbound)  # the Service port is not served any more
    http = next(c for c in inbound["filterChains"] if c["name"] == f"{POD_IP}_9081")
    route = http["filters"][-1]["typedConfig"]["routeConfig"]
    assert route["name"] == "inbound|9081||"
    assert route["virtualHosts"][0]["routes"][0]["decorator"]["operation"] == "productpage.default:9081/*"
    tcp = next(c for c in inbound["filterChains"] if c["name"] == f"{POD_IP}_9082")
    assert tcp["filters"][-1]["typedConfig"]["cluster"] == "inbound|9082||"

    clusters = generate(push, proxy(), CdsGenerator(), CLUSTER)
    assert "inbound|9080||" not in clusters
    to_pod, to_local, passthrough = (clusters[f"inbound|{p}||"] for p in (9081, 9082, 9083))
    assert to_pod["type"] == "STATIC" and to_pod["upstreamBindConfig"]["sourceAddress"]["address"] == "127.0.0.6"
    assert to_pod["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"] == {
        "socketAddress": {"address": POD_IP, "portValue": 9080}}
    # the instance on 9080 is not the listener's port: the service is the synthetic sidecar host
    assert to_pod["metadata"]["filterMetadata"]["istio"]["services"][0]["host"] == "productpage.default"
    assert to_local["type"] == "STATIC" and "upstreamBindConfig" not in to_local  # localhost needs no bind
    assert passthrough["type"] == "ORIGINAL_DST" and passthrough["lbPolicy"] == "CLUSTER_PROVIDED"
    assert "InboundPassthroughClusterIpv4" in clusters


def test_an_ingress_listener_with_capture_mode_none_binds_its_port(world):
    reg, store = world
    apply_sidecar(store, {"ingress": [
        {"port": {"number": 9080, "protocol": "HTTP", "name": "http"}, "defaultEndpoint": "127.0.0.1:8080"},
        {"port": {"number": 9090, "protocol": "HTTP", "name": "admin"}, "captureMode": "NONE",
         "bind": "10.244.0.5", "defaultEndpoint": "127.0.0.1:8090"}]})
    push = PushContext.build(reg, store)
    listeners = generate(push, proxy(), LdsGenerator(), LISTENER)
    bound = listeners[f"{POD_IP}_9090"]
    assert bound["address"] == {"socketAddress": {"address": POD_IP, "portValue": 9090}}
    assert "bindToPort" not in bound and bound["trafficDirection"] == "INBOUND"
    # a real port: no original_dst filter (nothing was redirected), and plaintext HTTP needs no inspector
    assert "listenerFilters" not in bound
    assert listeners["virtualInbound"]["listenerFilters"][0]["name"] == "envoy.filters.listener.original_dst"
    assert f"{POD_IP}_9080" in chain_names(listeners["virtualInbound"])
    assert f"{POD_IP}_9090" not in chain_names(listeners["virtualInbound"])
    # the order of getListeners: ..., virtualInbound, then the bound inbound listeners
    names = list(listeners)
    assert names.index("virtualInbound") < names.index(f"{POD_IP}_9090")


def test_without_capture_ingress_listeners_are_the_inbound_listeners(world):
    reg, store = world
    apply_sidecar(store, {"ingress": [{"port": {"number": 9081, "protocol": "HTTP", "name": "http"},
                                       "bind": "127.10.0.5", "defaultEndpoint": "0.0.0.0:9080"}]})
    push = PushContext.build(reg, store)
    p = proxy("NONE", ip="127.10.0.5")
    listeners = generate(push, p, LdsGenerator(), LISTENER)
    assert "virtualInbound" not in listeners  # mesh's own NONE-mode inbound listener gives way
    assert listeners["127.10.0.5_9081"]["address"]["socketAddress"] == {"address": "127.10.0.5", "portValue": 9081}
    clusters = generate(push, p, CdsGenerator(), CLUSTER)
    inbound = {n: c for n, c in clusters.items() if n.startswith("inbound|")}
    assert list(inbound) == ["inbound|9081||"]
    assert inbound["inbound|9081||"]["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"][
        "address"]["socketAddress"] == {"address": "127.10.0.5", "portValue": 9080}


def test_without_a_sidecar_the_inbound_side_is_unchanged(world):
    reg, store = world
    push = PushContext.build(reg, store)
    inbound = generate(push, proxy(), LdsGenerator(), LISTENER)["virtualInbound"]
    assert "0.0.0.0_9080" in chain_names(inbound)
    assert "inbound|9080||" in generate(push, proxy(), CdsGenerator(), CLUSTER)


# -- egress listeners and their routes ---------------------------------------------------------

def test_an_egress_listener_with_a_port_has_its_own_listener_and_routes(world):
    reg, store = world
    apply_sidecar(store, {"egress": [
        {"port": {"number": 9080, "protocol": "HTTP", "name": "http"}, "hosts": ["./reviews.default.svc.cluster.local"]},
        {"hosts": ["*/*"]}]})
    push = PushContext.build(reg, store)
    listeners = generate(push, proxy(), LdsGenerator(), LISTENER)
    assert "0.0.0.0_9080" in listeners and "10.96.0.13_27017" in listeners  # the catch-all adds mongodb
    routes = generate(push, proxy(), RdsGenerator(), ROUTE, names=["9080"])
    vhosts = [v["name"] for v in routes["9080"]["virtualHosts"]]
    # only the 9080 listener's host: ratings and productpage also listen on 9080, but that port is
    # locked to the explicit listener, so the catch-all's services do not reach its routes
    assert vhosts == [f"{REVIEWS}:9080", "allow_any"]
    # CDS is the scope's union: every service still has its clusters
    clusters = generate(push, proxy(), CdsGenerator(), CLUSTER)
    assert {f"outbound|9080||{h}" for h in (REVIEWS, RATINGS, PRODUCTPAGE)} <= set(clusters)


def test_a_tcp_egress_listener_takes_the_listeners_protocol_not_the_services(world):
    reg, store = world
    apply_sidecar(store, {"egress": [
        {"port": {"number": 9080, "protocol": "TCP", "name": "tcp"}, "hosts": ["./ratings.default.svc.cluster.local"]}]})
    push = PushContext.build(reg, store)
    listeners = generate(push, proxy(), LdsGenerator(), LISTENER)
    outbound = {n: li for n, li in listeners.items() if li.get("trafficDirection") == "OUTBOUND"
                and n != "virtualOutbound"}
    assert list(outbound) == ["10.96.0.12_9080"]
    assert outbound["10.96.0.12_9080"]["filterChains"][0]["filters"][0]["typedConfig"]["cluster"] == (
        f"outbound|9080||{RATINGS}")
    # no catch-all listener: the route config of a port nobody declared has only the catch-all host
    routes = generate(push, proxy(), RdsGenerator(), ROUTE, names=["9080", "http_proxy"])
    assert [v["name"] for v in routes["9080"]["virtualHosts"]] == [f"{RATINGS}:9080", "allow_any"]
    assert [v["name"] for v in routes["http_proxy"]["virtualHosts"]] == ["allow_any"]


def test_an_egress_listener_with_capture_mode_none_binds_localhost(world):
    reg, store = world
    apply_sidecar(store, {"egress": [
        {"port": {"number": 9080, "protocol": "HTTP", "name": "http"}, "captureMode": "NONE",
         "hosts": ["./reviews.default.svc.cluster.local"]},
        {"hosts": ["./*"]}]})
    push = PushContext.build(reg, store)
    listeners = generate(push, proxy(), LdsGenerator(), LISTENER)
    local = listeners["127.0.0.1_9080"]
    assert "bindToPort" not in local and local["address"]["socketAddress"]["address"] == "127.0.0.1"
    (chain,) = local["filterChains"]  # bound to one address: one chain, no inspectors
    assert "filterChainMatch" not in chain and "listenerFilters" not in local
    assert chain["filters"][0]["typedConfig"]["rds"]["routeConfigName"] == "9080"
    # the catch-all's HTTP port 9080 is on another address (0.0.0.0), so it is built as well
    assert listeners["0.0.0.0_9080"]["bindToPort"] is False


def test_an_http_proxy_egress_listener_routes_every_port_of_its_hosts(world):
    """``protocol: HTTP_PROXY``: one listener for all its services (needsPortMatch is false) whose
    route config, named by its port, holds every HTTP port of them with port-bearing domains."""
    reg, store = world
    apply_sidecar(store, {"egress": [{"port": {"number": 8888, "protocol": "HTTP_PROXY", "name": "proxy"},
                                      "captureMode": "NONE", "hosts": ["./*"]}]})
    push = PushContext.build(reg, store)
    listeners = generate(push, proxy(), LdsGenerator(), LISTENER)
    assert [n for n, li in listeners.items() if li["trafficDirection"] == "OUTBOUND" and n != "virtualOutbound"] == [
        "127.0.0.1_8888"]
    (chain,) = listeners["127.0.0.1_8888"]["filterChains"]
    assert chain["filters"][0]["typedConfig"]["rds"]["routeConfigName"] == "8888"
    vhosts = generate(push, proxy(), RdsGenerator(), ROUTE, names=["8888"])["8888"]["virtualHosts"]
    assert [v["name"] for v in vhosts] == [f"{h}:9080" for h in sorted((PRODUCTPAGE, RATINGS, REVIEWS))] + ["allow_any"]
    assert "reviews:9080" in vhosts[2]["domains"] and "reviews" not in vhosts[2]["domains"]


def test_the_scope_key_tells_listener_layouts_apart(world):
    """Two Sidecars whose scopes import the same services but declare different listeners must not
    share built listeners or routes."""
    reg, store = world
    apply_sidecar(store, {"egress": [{"hosts": ["./*"]}]})
    push = PushContext.build(reg, store)
    plain = generate(push, proxy(), RdsGenerator(), ROUTE, names=["9080"])
    apply_sidecar(store, {"egress": [
        {"port": {"number": 9080, "protocol": "HTTP", "name": "http"}, "hosts": ["./reviews.default.svc.cluster.local"]},
        {"hosts": ["./*"]}]})
    push = PushContext.build(reg, store, version="2")
    narrowed = generate(push, proxy(), RdsGenerator(), ROUTE, names=["9080"])
    assert len(plain["9080"]["virtualHosts"]) == 4 and len(narrowed["9080"]["virtualHosts"]) == 2


# -- Istio's own table ---------------------------------------------------------------------------

@istio_src.needed
def test_istio_egress_listener_wrapper_table():
    """``TestIstioEgressListenerWrapper`` (pilot/pkg/model/sidecar_test.go): which services an egress
    listener's hosts select, by namespace, wildcard and the proxy's own namespace."""
    body = istio_go.go_test("pilot/pkg/model/sidecar_test.go", "TestIstioEgressListenerWrapper")
    names = {"wildcardNamespace": "*", "wildcardService": "*"}
    services = {}
    for m in re.finditer(r"(\w+) := &Service\{", body):
        block = istio_go.block(body, m.end() - 1)
        hostname = re.search(r'Hostname:\s+"([^"]*)"', block).group(1)
        port = int(re.search(r"Ports:\s+port(\d+)", block).group(1))
        namespace = re.search(r'Namespace:\s+"([^"]*)"', block).group(1)
        services[m.group(1)] = Service(hostname=hostname, name=hostname, namespace=namespace,
                                       ports=[Port("http", port, ServiceProtocol.HTTP)])
    lists = {m.group(1): re.findall(r"\w+", m.group(2))
             for m in re.finditer(r"(\w+) := \[\]\*Service\{([^}]*)\}", body)}

    def service_list(text: str) -> list[Service]:
        text = text.strip().rstrip(",")
        found = lists[text] if text in lists else re.findall(r"\w+", istio_go.block(text, text.index("{")))
        return [services[v] for v in found]

    table = re.search(r"tests := \[\]struct \{", body)
    cases = istio_go.rows(istio_go.block(body, body.index("{", body.index("}", table.end()) + 1)))
    assert len(cases) >= 10
    for case in cases:
        fields = dict(re.findall(r"(\w+):\s+([^\n]+)", case))
        hosts = {}
        listener_hosts = istio_go.block(fields["listenerHosts"], fields["listenerHosts"].index("{"))
        for key, values in re.findall(r'(\w+|"[^"]*"):\s+\{([^}]*)\}', listener_hosts):
            ns = key.strip('"') if key.startswith('"') else names[key]
            hosts[ns] = [v.strip('"') if v.startswith('"') else names[v] for v in re.findall(r'\w+|"[^"]*"', values)]
        namespace = istio_go.strings(fields["namespace"])[0]
        got = select_services(service_list(fields["services"]), namespace, hosts, None)
        assert got == service_list(fields["expected"]), istio_go.strings(fields["name"])[0]
