"""SidecarScope, exportTo, ProxyNeedsPush and updateContext: who sees what, who gets pushed.

On an in-memory registry and config store, through the real generators (``AdsServer.generate``
is not needed: the generators read ``scoped(push, state)`` exactly as ADS hands it to them)."""

from __future__ import annotations

import pytest
from xds_fakes import FakeConfigStore, FakeRegistry, endpoint

from mesh.model.proxy import parse_node_id
from mesh.model.push_request import ConfigKey, PushRequest
from mesh.networking.push_context import INDEXES, PushContext, indexes_to_rebuild
from mesh.xds.cds import CdsGenerator
from mesh.xds.generator import ProxyState, WatchedResource, scoped
from mesh.xds.lds import LdsGenerator
from mesh.xds.proxy_dependencies import compute_proxy_state, needs_push
from mesh.xds.rds import RdsGenerator
from mesh.xds.types import CLUSTER, LISTENER, ROUTE

A, B = "bookinfo", "shop"


def fqdn(name, ns):
    return f"{name}.{ns}.svc.cluster.local"


@pytest.fixture
def world():
    reg, store = FakeRegistry(), FakeConfigStore()
    for name in ("productpage", "reviews", "ratings"):
        reg.add_service(name, namespace=A)
    for name in ("cart", "checkout"):
        reg.add_service(name, namespace=B)
    reg.add_service("istiod", namespace="istio-system", ports=((15012, "tcp"),))
    reg.set_endpoints(fqdn("reviews", A), 9080, [endpoint("127.10.0.2", version="v1")])
    return reg, store


def proxy(pod, ns, labels=None, ip="127.10.0.50"):
    return parse_node_id(f"sidecar~{ip}~{pod}.{ns}~{ns}.svc.cluster.local",
                         {"LABELS": labels or {"app": pod.split("-")[0]}, "NAMESPACE": ns})


def state(push, p):
    s = ProxyState(p)
    compute_proxy_state(s, push, None)
    return s


def cds_names(push, s):
    return {r.name for r in CdsGenerator().generate(s, scoped(push, s), WatchedResource(CLUSTER), None)}


def outbound_hosts(push, s):
    return {n.rsplit("|", 1)[1] for n in cds_names(push, s) if n.startswith("outbound|")}


def rebuild(world, previous, *changed):
    return PushContext.build(*world, version=str(int(previous.version) + 1), previous=previous,
                             configs_updated=set(changed))


def test_default_scope_sees_every_exported_service(world):
    push = PushContext.build(*world, version="1")
    s = state(push, proxy("cart-v1", B))
    assert s.sidecar_scope.name == "default-sidecar"
    assert outbound_hosts(push, s) == {fqdn(n, A) for n in ("productpage", "reviews", "ratings")} | {
        fqdn("cart", B), fqdn("checkout", B), fqdn("istiod", "istio-system")}


def test_export_to_dot_hides_a_service_from_other_namespaces_cds(world):
    reg, store = world
    reg.get_service(fqdn("ratings", A)).export_to = (".",)
    push = PushContext.build(reg, store, version="1")
    assert fqdn("ratings", A) not in outbound_hosts(push, state(push, proxy("cart-v1", B)))
    assert fqdn("ratings", A) in outbound_hosts(push, state(push, proxy("reviews-v1", A)))
    # exportTo naming a namespace: visible there and at home, nowhere else
    reg.get_service(fqdn("ratings", A)).export_to = ("istio-system",)
    push = PushContext.build(reg, store, version="2")
    assert fqdn("ratings", A) not in outbound_hosts(push, state(push, proxy("cart-v1", B)))
    assert fqdn("ratings", A) in outbound_hosts(push, state(push, proxy("gw", "istio-system")))


def test_mesh_default_service_export_to(world):
    push = PushContext.build(*world, version="1", export_defaults={"service": (".",)})
    assert outbound_hosts(push, state(push, proxy("cart-v1", B))) == {fqdn("cart", B), fqdn("checkout", B)}


def test_sidecar_egress_hosts_limit_cds_and_lds(world):
    _, store = world
    store.apply("Sidecar", "default", B, {"egress": [{"hosts": ["./*", "istio-system/*"]}]})
    push = PushContext.build(*world, version="1")
    s = state(push, proxy("cart-v1", B))
    assert s.sidecar_scope.name == "default"
    assert outbound_hosts(push, s) == {fqdn("cart", B), fqdn("checkout", B), fqdn("istiod", "istio-system")}
    listeners = {li.name for li in LdsGenerator().generate(s, scoped(push, s), WatchedResource(LISTENER), None)}
    assert {"0.0.0.0_9080", "0.0.0.0_15012"} <= listeners  # a listener per port of the services in scope
    [routes] = RdsGenerator().generate(s, scoped(push, s), WatchedResource(ROUTE, names=["9080"]), None)
    assert {v["name"] for v in routes.body["virtualHosts"]} == {
        f"{fqdn('cart', B)}:9080", f"{fqdn('checkout', B)}:9080", "allow_any"}
    # the other namespace is unaffected
    assert fqdn("cart", B) in outbound_hosts(push, state(push, proxy("reviews-v1", A)))


def test_sidecar_egress_host_forms(world):
    _, store = world
    store.apply("Sidecar", "default", B, {"egress": [{"hosts": [f"{A}/reviews.{A}.svc.cluster.local", "~/*"]}]})
    push = PushContext.build(*world, version="1")
    assert outbound_hosts(push, state(push, proxy("cart-v1", B))) == {fqdn("reviews", A)}
    store.apply("Sidecar", "default", B, {"egress": [{"hosts": ["*/*.bookinfo.svc.cluster.local"]}]})
    push = PushContext.build(*world, version="2")
    assert outbound_hosts(push, state(push, proxy("cart-v1", B))) == {fqdn(n, A) for n in
                                                                       ("productpage", "reviews", "ratings")}


def test_workload_selected_sidecar_applies_only_to_its_workloads(world):
    _, store = world
    store.apply("Sidecar", "ns-wide", B, {"egress": [{"hosts": ["./*"]}]})
    store.apply("Sidecar", "checkout", B, {"workloadSelector": {"labels": {"app": "checkout"}},
                                            "egress": [{"hosts": ["istio-system/*"]}]})
    push = PushContext.build(*world, version="1")
    assert outbound_hosts(push, state(push, proxy("checkout-v1", B))) == {fqdn("istiod", "istio-system")}
    assert outbound_hosts(push, state(push, proxy("cart-v1", B))) == {fqdn("cart", B), fqdn("checkout", B)}


def test_root_namespace_sidecar_is_the_mesh_default(world):
    _, store = world
    store.apply("Sidecar", "default", "istio-system", {"egress": [{"hosts": ["./*", "istio-system/*"]}]})
    push = PushContext.build(*world, version="1")
    assert outbound_hosts(push, state(push, proxy("cart-v1", B))) == {
        fqdn("cart", B), fqdn("checkout", B), fqdn("istiod", "istio-system")}


def test_outbound_traffic_policy_of_the_sidecar_wins(world):
    _, store = world
    store.apply("Sidecar", "default", B, {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}})
    push = PushContext.build(*world, version="1")
    assert scoped(push, state(push, proxy("cart-v1", B))).outbound_traffic_mode == "REGISTRY_ONLY"
    assert scoped(push, state(push, proxy("reviews-v1", A))).outbound_traffic_mode == "ALLOW_ANY"


def test_virtual_service_destinations_are_imported(world):
    _, store = world
    store.apply("VirtualService", "reviews", B, {"hosts": [f"reviews.{A}.svc.cluster.local"], "http": [
        {"route": [{"destination": {"host": f"ratings.{A}.svc.cluster.local"}}]}]})
    store.apply("Sidecar", "default", B, {"egress": [{"hosts": [f"./reviews.{A}.svc.cluster.local"]}]})
    push = PushContext.build(*world, version="1")
    s = state(push, proxy("cart-v1", B))
    assert [vs.name for vs in s.sidecar_scope.virtual_services] == ["reviews"]
    assert outbound_hosts(push, s) == {fqdn("ratings", A)}  # the route's destination, found by the VS


def test_destination_rule_lookup_order(world):
    """The proxy's namespace, then the service's, then the root namespace; not a third namespace."""
    _, store = world
    store.apply("DestinationRule", "in-b", B, {"host": f"reviews.{A}.svc.cluster.local",
                                                "subsets": [{"name": "b", "labels": {"version": "v1"}}]})
    store.apply("DestinationRule", "in-a", A, {"host": "reviews", "subsets": [{"name": "a", "labels": {}}]})
    store.apply("DestinationRule", "private", "istio-system", {"host": f"cart.{B}.svc.cluster.local",
                                                               "subsets": [{"name": "root", "labels": {}}]})
    push = PushContext.build(*world, version="1")
    rev = fqdn("reviews", A)
    in_b, in_a = (state(push, proxy("cart-v1", B)), state(push, proxy("ratings-v1", A)))
    assert f"outbound|9080|b|{rev}" in cds_names(push, in_b) and f"outbound|9080|a|{rev}" not in cds_names(push, in_b)
    assert f"outbound|9080|a|{rev}" in cds_names(push, in_a)
    assert f"outbound|9080|root|{fqdn('cart', B)}" in cds_names(push, in_a)  # root namespace fallback
    store.apply("DestinationRule", "in-a", A, {"host": "reviews", "exportTo": ["."],
                                               "subsets": [{"name": "a", "labels": {}}]})
    store.delete("DestinationRule", "in-b", B)
    push = PushContext.build(*world, version="2")
    assert f"outbound|9080|a|{rev}" not in cds_names(push, state(push, proxy("cart-v1", B)))  # private to A


# -- ProxyNeedsPush -------------------------------------------------------------------------------------------
def _pushed(world, previous, states, change):
    push = rebuild(world, previous, change)
    request = PushRequest.of("config", configs={change})
    out = {}
    for s in states:
        compute_proxy_state(s, push, request)
        out[s.proxy.id] = needs_push(s, request)[0]
    return out


def test_virtual_service_exported_to_its_namespace_pushes_only_that_namespace(world):
    _, store = world
    push = PushContext.build(*world, version="1")
    states = [state(push, proxy("reviews-v1", A)), state(push, proxy("cart-v1", B))]
    store.apply("VirtualService", "reviews", A, {"hosts": ["reviews"], "exportTo": ["."],
                                                 "http": [{"route": [{"destination": {"host": "reviews"}}]}]})
    pushed = _pushed(world, push, states, ConfigKey("VirtualService", "reviews", A))
    assert pushed == {f"reviews-v1.{A}": True, f"cart-v1.{B}": False}
    ok, why = needs_push(states[1], PushRequest.of("config", configs={ConfigKey("VirtualService", "reviews", A)}))
    assert not ok and "not in scope" in why


def test_virtual_service_pushes_only_sidecars_importing_its_hosts(world):
    _, store = world
    store.apply("Sidecar", "default", B, {"egress": [{"hosts": ["./*"]}]})
    push = PushContext.build(*world, version="1")
    states = [state(push, proxy("reviews-v1", A)), state(push, proxy("cart-v1", B))]
    store.apply("VirtualService", "reviews", A, {"hosts": ["reviews"],
                                                 "http": [{"route": [{"destination": {"host": "reviews"}}]}]})
    pushed = _pushed(world, push, states, ConfigKey("VirtualService", "reviews", A))
    assert pushed == {f"reviews-v1.{A}": True, f"cart-v1.{B}": False}


def test_sidecar_change_pushes_only_the_selected_workloads(world):
    _, store = world
    push = PushContext.build(*world, version="1")
    states = [state(push, proxy("cart-v1", B)), state(push, proxy("checkout-v1", B)),
              state(push, proxy("reviews-v1", A))]
    store.apply("Sidecar", "checkout", B, {"workloadSelector": {"labels": {"app": "checkout"}},
                                            "egress": [{"hosts": ["./*"]}]})
    pushed = _pushed(world, push, states, ConfigKey("Sidecar", "checkout", B))
    assert pushed == {f"cart-v1.{B}": False, f"checkout-v1.{B}": True, f"reviews-v1.{A}": False}
    # deleting it: the proxy that had it hears (its previous scope depended on it)
    store.delete("Sidecar", "checkout", B)
    pushed = _pushed(world, rebuild(world, push, ConfigKey("Sidecar", "checkout", B)), states,
                     ConfigKey("Sidecar", "checkout", B))
    assert pushed == {f"cart-v1.{B}": False, f"checkout-v1.{B}": True, f"reviews-v1.{A}": False}


def test_service_change_pushes_only_proxies_that_see_it(world):
    reg, store = world
    reg.get_service(fqdn("checkout", B)).export_to = (".",)
    push = PushContext.build(reg, store, version="1")
    states = [state(push, proxy("cart-v1", B)), state(push, proxy("reviews-v1", A))]
    pushed = _pushed(world, push, states, ConfigKey("ServiceEntry", fqdn("checkout", B), B))
    assert pushed == {f"cart-v1.{B}": True, f"reviews-v1.{A}": False}


def test_gateway_changes_skip_sidecars_and_empty_configs_push_everyone(world):
    push = PushContext.build(*world, version="1")
    s = state(push, proxy("cart-v1", B))
    assert needs_push(s, PushRequest.of("config", configs={ConfigKey("Gateway", "gw", B)})) == (
        False, "sidecars ignore Gateway")
    assert needs_push(s, PushRequest.of("config"))[0]
    assert needs_push(s, PushRequest.of("config", configs={ConfigKey("AuthorizationPolicy", "x", "istio-system")}))[0]
    assert not needs_push(s, PushRequest.of("config", configs={ConfigKey("AuthorizationPolicy", "x", A)}))[0]


# -- updateContext -------------------------------------------------------------------------------------------
# 1.19's updateContext, one row per kind: the indexes a change of that kind rebuilds.
REUSE_TABLE = {
    "ServiceEntry": {"services", "sidecars"},
    "DestinationRule": {"destination_rules", "sidecars"},
    "VirtualService": {"virtual_services", "sidecars"},
    "Sidecar": {"sidecars"},
    "Gateway": {"gateways"},
    "PeerAuthentication": {"authn"},
    "RequestAuthentication": {"authn"},
    "HTTPRoute": {"virtual_services", "gateways", "sidecars"},
    "AuthorizationPolicy": set(),
    "WasmPlugin": set(),
}


@pytest.mark.parametrize("kind", sorted(REUSE_TABLE))
def test_update_context_reuses_exactly_the_unaffected_indexes(world, kind):
    assert indexes_to_rebuild({kind}) == REUSE_TABLE[kind]
    first = PushContext.build(*world, version="1")
    second = rebuild(world, first, ConfigKey(kind, "x", A))
    assert {i for i in INDEXES if second.rebuilt[i]} == REUSE_TABLE[kind]
    fields = {"services": "service_index", "virtual_services": "virtual_service_index",
              "destination_rules": "destination_rule_index", "gateways": "gateways",
              "authn": "peer_authentications"}
    for index, name in fields.items():
        same = getattr(second, name) is getattr(first, name)
        assert same == (index not in REUSE_TABLE[kind]), index


def test_update_context_without_configs_builds_everything(world):
    first = PushContext.build(*world, version="1")
    second = PushContext.build(*world, version="2", previous=first, configs_updated=set())
    assert all(second.rebuilt.values())


def test_reused_sidecar_index_answers_for_the_new_context(world):
    _, store = world
    store.apply("Sidecar", "default", B, {"egress": [{"hosts": ["./*"]}]})
    first = PushContext.build(*world, version="1")
    second = rebuild(world, first, ConfigKey("Gateway", "gw", B))
    assert not second.rebuilt["sidecars"]
    s = state(second, proxy("cart-v1", B))
    assert outbound_hosts(second, s) == {fqdn("cart", B), fqdn("checkout", B)}
