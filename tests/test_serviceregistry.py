"""Service registries: Kubernetes, ServiceEntry, the aggregate, and stage 7 against the traces."""

from __future__ import annotations

import pytest
from registryhelpers import endpoint_slice, istio, namespace, node, pod, replay, service

from mesh.bootstrap.args import ServerArgs
from mesh.bootstrap.server import Server
from mesh.configcontroller.crdclient import CrdClient
from mesh.kube.trace import load_trace
from mesh.model.push_request import ConfigKey, PushRequest
from mesh.model.service import HealthStatus, Resolution, ServiceProtocol
from mesh.serviceregistry.aggregate import AggregateRegistry
from mesh.serviceregistry.kube.controller import KubeRegistry
from mesh.serviceregistry.kube.conversion import convert_protocol, convert_service
from mesh.serviceregistry.serviceentry.controller import ServiceEntryRegistry

P = ServiceProtocol


# -- protocol and service conversion ------------------------------------------------------------------
@pytest.mark.parametrize(("port", "name", "proto", "app", "expected"), [
    (80, "http", "TCP", None, P.HTTP),
    (80, "http-web", "TCP", None, P.HTTP),
    (80, "HTTP2-x", "TCP", None, P.HTTP2),
    (80, "grpc-web", "TCP", None, P.GRPC_WEB),
    (80, "grpc-webby-thing", "TCP", None, P.GRPC_WEB),  # prefix match on the whole "grpc-web"
    (80, "grpc", "TCP", None, P.GRPC),
    (80, "tcp-db", "TCP", None, P.TCP),
    (80, "redis", "TCP", None, P.REDIS),
    (80, "web", "TCP", None, P.UNSUPPORTED),  # sniffed
    (80, "", "TCP", None, P.UNSUPPORTED),
    (3306, "", "TCP", None, P.TCP),  # well-known port: never sniffed
    (53, "dns", "TCP", None, P.TCP),
    (80, "http", "UDP", None, P.UDP),  # UDP wins over the name
    (80, "tcp", "TCP", "http", P.HTTP),  # appProtocol wins over the name
    (80, "http", "TCP", "kubernetes.io/h2c", P.HTTP2),
    (80, "http", "TCP", "https", P.HTTPS),
])
def test_convert_protocol(port, name, proto, app, expected):
    assert convert_protocol(port, name, proto, app) is expected


def test_convert_service_kinds():
    plain = convert_service(service("reviews", ports=[{"name": "http", "port": 9080}], cluster_ip="10.0.0.9"),
                            "cluster.local")
    assert (plain.hostname, plain.cluster_vip, plain.resolution) == (
        "reviews.default.svc.cluster.local", "10.0.0.9", Resolution.CLIENT_SIDE_LB)
    headless = convert_service(service("db", cluster_ip="None"), "example.org")
    assert headless.hostname == "db.default.svc.example.org"
    assert headless.resolution is Resolution.PASSTHROUGH and headless.cluster_vip == ""
    ext = convert_service(service("ext", cluster_ip="", type="ExternalName", externalName="api.example.com"),
                          "cluster.local")
    assert ext.resolution is Resolution.DNS_LB and ext.mesh_external and ext.external_name == "api.example.com"
    annotated = service("a")
    annotated["metadata"]["annotations"] = {"networking.istio.io/exportTo": ".,istio-system",
                                            "alpha.istio.io/kubernetes-serviceaccounts": "sa1"}
    svc = convert_service(annotated, "cluster.local", trust_domain="td.example")
    assert svc.export_to == (".", "istio-system")
    assert svc.service_accounts == ["spiffe://td.example/ns/default/sa/sa1"]


# -- the Kubernetes registry -----------------------------------------------------------------------------
def kube_registry(*objects, **kwargs) -> tuple[KubeRegistry, AggregateRegistry, list[PushRequest]]:
    pushes: list[PushRequest] = []
    agg = AggregateRegistry(push=pushes.append)
    client = replay(*objects)
    reg = KubeRegistry(client, agg, **kwargs)
    agg.add_registry(reg)
    reg.run()
    return reg, agg, pushes


def test_endpoints_carry_pod_identity_locality_and_tls_mode():
    reg, agg, _ = kube_registry(
        node("n1", "eu-west1", "eu-west1-a"),
        service("reviews", ports=[{"name": "http", "port": 9080, "targetPort": 8080}]),
        pod("reviews-1", "10.1.0.1", labels={"app": "reviews", "security.istio.io/tlsMode": "istio"},
            node_name="n1", sa="bookinfo-reviews"),
        pod("reviews-2", "10.1.0.2", labels={"app": "reviews"}, node_name="n1",
            annotations={"sidecar.istio.io/status": "{}"}),
        pod("reviews-3", "10.1.0.3", labels={"app": "reviews"}, node_name="n1"),
        endpoint_slice("reviews-abc", "reviews", [("10.1.0.1", "reviews-1", True), ("10.1.0.2", "reviews-2", True),
                                                  ("10.1.0.3", "reviews-3", None)]),
    )
    eps = agg.endpoints("reviews.default.svc.cluster.local", 9080)
    assert [(e.address, e.endpoint_port, e.service_port_name) for e in eps] == [
        ("10.1.0.1", 8080, "http"), ("10.1.0.2", 8080, "http"), ("10.1.0.3", 8080, "http")]
    assert [e.tls_mode for e in eps] == ["istio", "istio", "disabled"]
    assert eps[0].service_account == "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
    assert eps[1].service_account == "spiffe://cluster.local/ns/default/sa/default"
    assert eps[0].locality == "eu-west1/eu-west1-a/"
    assert eps[0].labels["topology.kubernetes.io/zone"] == "eu-west1-a"
    assert eps[0].labels["kubernetes.io/hostname"] == "n1"
    assert agg.endpoints("reviews.default.svc.cluster.local", 1234) == []
    assert reg.pod_by_ip("10.1.0.2")["metadata"]["name"] == "reviews-2"


def test_unready_endpoints_are_dropped_unless_asked_for():
    objects = (service("r"), pod("r-1", "10.1.0.1"), pod("r-2", "10.1.0.2"),
               endpoint_slice("r-x", "r", [("10.1.0.1", "r-1", True), ("10.1.0.2", "r-2", False)]))
    _, agg, _ = kube_registry(*objects)
    assert [e.address for e in agg.endpoints("r.default.svc.cluster.local", 80)] == ["10.1.0.1"]
    _, agg, _ = kube_registry(*objects, send_unhealthy_endpoints=True)
    found = agg.endpoints("r.default.svc.cluster.local", 80)
    assert [(e.address, e.health) for e in found] == [("10.1.0.1", HealthStatus.HEALTHY),
                                                      ("10.1.0.2", HealthStatus.UNHEALTHY)]


def test_pod_cache_holds_only_ready_running_pods():
    reg, _, _ = kube_registry(pod("a", "10.1.0.1"), pod("b", "10.1.0.2", ready=False),
                              pod("c", "10.1.0.3", phase="Succeeded"))
    assert reg.pod_by_ip("10.1.0.1")["metadata"]["name"] == "a"
    assert reg.pod_by_ip("10.1.0.2") is None and reg.pod_by_ip("10.1.0.3") is None
    # by name from the proxy's node id even when not ready, else by IP
    assert reg.pod_by_proxy("b", "default", "10.1.0.2")["metadata"]["name"] == "b"
    assert reg.pod_by_proxy("", "default", "10.1.0.1")["metadata"]["name"] == "a"
    # becoming unready removes it; workload handlers hear a delete
    heard = []
    reg.append_workload_handler(lambda wi, ev: heard.append((wi.name, ev)))
    reg.client.update(pod("a", "10.1.0.1", ready=False))
    assert reg.pod_by_ip("10.1.0.1") is None and heard == [("a", "delete")]


def test_slice_before_its_pod_is_processed_when_the_pod_arrives():
    reg, agg, _ = kube_registry(service("r"), endpoint_slice("r-x", "r", [("10.1.0.1", "r-1", True)]))
    assert agg.endpoints("r.default.svc.cluster.local", 80) == []
    reg.client.create(pod("r-1", "10.1.0.1", labels={"app": "r", "version": "v9"}))
    found = agg.endpoints("r.default.svc.cluster.local", 80)
    assert [e.address for e in found] == ["10.1.0.1"] and found[0].labels["version"] == "v9"
    assert agg.eds_updates[-1].hostname == "r.default.svc.cluster.local" and len(agg.eds_updates[-1].endpoints) == 1


def test_service_and_endpoint_events_are_reported_differently():
    reg, agg, pushes = kube_registry(service("r"), pod("r-1", "10.1.0.1"))
    seen = []
    agg.append_service_handler(lambda prev, cur, ev: seen.append((prev and prev.hostname, cur.hostname, ev)))
    reg.client.create(endpoint_slice("r-x", "r", [("10.1.0.1", "r-1", True)]))
    assert seen == [] and pushes == []  # endpoints: an EDS update only
    assert (agg.eds_updates[-1].hostname, agg.eds_updates[-1].push) == ("r.default.svc.cluster.local", True)
    reg.client.update(service("r", ports=[{"name": "http", "port": 81}]))
    reg.client.delete("services", "r", "default")
    host = "r.default.svc.cluster.local"
    assert seen == [(host, host, "update"), (None, host, "delete")]
    assert [e.event for e in agg.service_events] == ["add", "update", "delete"]
    assert agg.get_service(host) is None


def test_headless_endpoint_change_requests_a_full_push():
    reg, _, pushes = kube_registry(service("db", cluster_ip="None"), pod("db-0", "10.1.0.5"))
    reg.client.create(endpoint_slice("db-x", "db", [("10.1.0.5", "db-0", True)]))
    assert len(pushes) == 1 and pushes[0].full
    assert pushes[0].reason == {"headlessendpoint": 1}
    assert pushes[0].configs_updated == {ConfigKey("ServiceEntry", "db.default.svc.cluster.local", "default")}


def test_external_name_service_endpoints():
    _, agg, _ = kube_registry(service("ext", cluster_ip="", type="ExternalName", externalName="api.example.com",
                                      ports=[{"name": "https", "port": 443}]))
    eps = agg.endpoints("ext.default.svc.cluster.local", 443)
    assert [(e.address, e.endpoint_port) for e in eps] == [("api.example.com", 443)]


def test_network_from_pod_label_namespace_label_and_mesh_networks():
    networks = {"networks": {"net-cidr": {"endpoints": [{"fromCidr": "10.9.0.0/16"}]}}}
    objects = [service("r"), pod("a", "10.1.0.1", labels={"topology.istio.io/network": "net-pod"}),
               pod("b", "10.9.0.2"), pod("c", "10.1.0.3"),
               endpoint_slice("r-x", "r", [("10.1.0.1", "a", True), ("10.9.0.2", "b", True), ("10.1.0.3", "c", True)])]
    _, agg, _ = kube_registry(*objects, mesh_networks=lambda: networks)
    assert [e.network for e in agg.endpoints("r.default.svc.cluster.local", 80)] == ["net-pod", "net-cidr", ""]
    _, agg, _ = kube_registry(namespace("istio-system", {"topology.istio.io/network": "net-ns"}), *objects,
                              mesh_networks=lambda: networks)
    assert [e.network for e in agg.endpoints("r.default.svc.cluster.local", 80)] == ["net-pod", "net-ns", "net-ns"]


# -- the ServiceEntry registry ---------------------------------------------------------------------------
def se_registry(*objects):
    pushes: list[PushRequest] = []
    agg = AggregateRegistry(push=pushes.append)
    client = replay(*objects)
    store = CrdClient(client)
    kube = KubeRegistry(client, agg)
    se = ServiceEntryRegistry(store, agg)
    agg.add_registry(se)
    agg.add_registry(kube)
    kube.append_workload_handler(se.workload_instance_handler)
    se.append_workload_handler(kube.workload_instance_handler)
    kube.run()
    se.run()
    return se, agg, pushes, client


STATIC_SE = istio("ServiceEntry", "ext", {
    "hosts": ["api.example.com"], "addresses": ["240.0.0.1/32"], "location": "MESH_EXTERNAL", "resolution": "STATIC",
    "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}],
    "endpoints": [{"address": "1.2.3.4", "ports": {"https": 8443}, "serviceAccount": "ext"}, {"address": "1.2.3.5"}],
})


def test_service_entry_static_endpoints_and_services():
    _, agg, pushes, _ = se_registry(STATIC_SE)
    svc = agg.get_service("api.example.com")
    assert (svc.registry, svc.cluster_vip, svc.resolution, svc.mesh_external) == (
        "External", "240.0.0.1", Resolution.CLIENT_SIDE_LB, True)
    assert [(p.port, p.protocol) for p in svc.ports] == [(443, P.HTTPS)]
    eps = agg.endpoints("api.example.com", 443)
    assert [(e.address, e.endpoint_port, e.tls_mode) for e in eps] == [("1.2.3.4", 8443, "istio"),
                                                                       ("1.2.3.5", 443, "disabled")]
    assert eps[0].service_account == "spiffe://cluster.local/ns/default/sa/ext"
    assert pushes[0].full and pushes[0].configs_updated == {ConfigKey("ServiceEntry", "api.example.com", "default")}


def test_service_entry_dns_without_endpoints_uses_the_host():
    se = istio("ServiceEntry", "dns", {"hosts": ["a.example.com", "b.example.com"], "resolution": "DNS",
                                       "ports": [{"number": 80, "name": "http", "protocol": "HTTP", "targetPort": 8080}]})
    _, agg, _, _ = se_registry(se)
    assert agg.get_service("b.example.com").resolution is Resolution.DNS_LB
    assert [(e.address, e.endpoint_port) for e in agg.endpoints("b.example.com", 80)] == [("b.example.com", 8080)]


def test_service_entry_update_endpoints_only_is_an_eds_update():
    _, agg, pushes, client = se_registry(STATIC_SE)
    changed = istio("ServiceEntry", "ext", {**STATIC_SE["spec"], "endpoints": [{"address": "1.2.3.9"}]})
    client.update(changed)
    assert len(pushes) == 1  # still only the add
    assert agg.eds_updates[-1].hostname == "api.example.com"
    assert [e.address for e in agg.eds_updates[-1].endpoints] == ["1.2.3.9"]
    dns = istio("ServiceEntry", "ext", {**changed["spec"], "resolution": "DNS"})
    client.update(dns)
    assert len(pushes) == 2 and pushes[-1].reason == {"service": 1}
    client.delete("serviceentries.networking.istio.io", "ext", "default")
    assert agg.get_service("api.example.com") is None and len(pushes) == 3


def test_workload_selector_picks_pods_and_workload_entries():
    se = istio("ServiceEntry", "vm", {"hosts": ["vm.internal"], "resolution": "STATIC", "location": "MESH_INTERNAL",
                                      "ports": [{"number": 80, "name": "http-web", "protocol": "HTTP"}],
                                      "workloadSelector": {"labels": {"app": "vm"}}})
    we = istio("WorkloadEntry", "vm-1", {"address": "10.5.0.1", "labels": {"app": "vm"}, "serviceAccount": "vm"})
    _, agg, _, client = se_registry(se, we, pod("vm-pod", "10.5.0.2", labels={"app": "vm"}),
                                    pod("other", "10.5.0.3", labels={"app": "other"}))
    eps = agg.endpoints("vm.internal", 80)
    # the pod's named container port http-web (8080) is used; the WorkloadEntry has none, so 80
    assert sorted((e.address, e.endpoint_port) for e in eps) == [("10.5.0.1", 80), ("10.5.0.2", 8080)]
    assert not agg.get_service("vm.internal").mesh_external
    client.create(pod("vm-pod-2", "10.5.0.4", labels={"app": "vm"}))
    assert sorted(e.address for e in agg.eds_updates[-1].endpoints) == ["10.5.0.1", "10.5.0.2", "10.5.0.4"]
    client.delete("workloadentries.networking.istio.io", "vm-1", "default")
    assert sorted(e.address for e in agg.endpoints("vm.internal", 80)) == ["10.5.0.2", "10.5.0.4"]


def test_kubernetes_service_selects_workload_entries():
    we = istio("WorkloadEntry", "vm-1", {"address": "10.5.0.1", "labels": {"app": "r"}, "ports": {"web": 9999}})
    _, agg, _, _ = se_registry(service("r", ports=[{"name": "http", "port": 80, "targetPort": "web"}]), we)
    assert [(e.address, e.endpoint_port) for e in agg.endpoints("r.default.svc.cluster.local", 80)] == [
        ("10.5.0.1", 9999)]


def test_service_entry_shadows_kubernetes_service_of_the_same_host():
    se = istio("ServiceEntry", "shadow", {"hosts": ["r.default.svc.cluster.local"], "resolution": "DNS",
                                          "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]})
    _, agg, _, _ = se_registry(service("r"), se)
    assert agg.get_service("r.default.svc.cluster.local").registry == "External"
    assert [s.registry for s in agg.services()] == ["External", "Kubernetes"]


# -- stage 7 against the traces ----------------------------------------------------------------------------
BOOKINFO_HOSTS = {f"{n}.default.svc.cluster.local" for n in ("details", "productpage", "ratings", "reviews")}


def slice_addresses(objects: list[dict], service_name: str) -> list[str]:
    return sorted(a for o in objects if o["kind"] == "EndpointSlice"
                  and o["metadata"]["labels"].get("kubernetes.io/service-name") == service_name
                  for ep in o.get("endpoints") or [] if (ep.get("conditions") or {}).get("ready", True)
                  for a in ep["addresses"])


def test_bookinfo_registry_after_stage_7():
    server = Server(ServerArgs(trace="bookinfo")).run_until("init_controllers")
    sd = server.environment.service_discovery
    assert server.environment.config_store is not None
    assert {s.hostname for s in sd.services()} == {"istiod.istio-system.svc.cluster.local"}
    server.clock.advance_to(load_trace("bookinfo").duration)
    hosts = {s.hostname for s in sd.services()}
    assert hosts == BOOKINFO_HOSTS | {"istiod.istio-system.svc.cluster.local",
                                      "istio-ingressgateway.istio-system.svc.cluster.local"}
    reviews = sd.get_service("reviews.default.svc.cluster.local")
    assert [(p.name, p.port, p.protocol) for p in reviews.ports] == [("http", 9080, P.HTTP)]
    istiod = sd.get_service("istiod.istio-system.svc.cluster.local")
    assert {p.port: p.protocol for p in istiod.ports}[15010] is P.GRPC
    objects = server.kube_client.list_objects()
    pods = {p["metadata"]["name"]: p for p in objects if p["kind"] == "Pod"}
    for svc in ("details", "productpage", "ratings", "reviews"):
        eps = sd.endpoints(f"{svc}.default.svc.cluster.local", 9080)
        assert sorted(e.address for e in eps) == slice_addresses(objects, svc)
        for ep in eps:
            owner = next(p for p in pods.values() if p["status"]["podIP"] == ep.address)
            assert ep.service_account == (f"spiffe://cluster.local/ns/default/sa/"
                                          f"{owner['spec']['serviceAccountName']}")
    routes = server.debug_routes
    assert {s["hostname"] for s in routes["/debug/registryz"]({})} == hosts
    endpointz = routes["/debug/endpointz"]({})
    assert {e["svc"] for e in endpointz} >= {f"{h}:http" for h in BOOKINFO_HOSTS}
    # bookinfo's Istio config: bookinfo-gateway.yaml's Gateway and VirtualService
    assert [(c["kind"], c["metadata"]["name"]) for c in routes["/debug/configz"]({})] == \
        [("Gateway", "bookinfo-gateway"), ("VirtualService", "bookinfo")]


def test_scale_out_endpoints_follow_each_step():
    trace = load_trace("scale-out")
    server = Server(ServerArgs(trace="scale-out")).run_until("init_controllers")
    sd = server.environment.service_discovery
    host = "reviews.default.svc.cluster.local"
    steps = sorted({e.t for e in trace.events})
    counts = []
    for t in steps:
        server.clock.advance_to(t)
        addresses = sorted(e.address for e in sd.endpoints(host, 9080))
        assert addresses == slice_addresses(server.kube_client.list_objects(), "reviews"), t
        counts.append(len(addresses))
        v3 = [e for e in sd.endpoints(host, 9080) if e.labels.get("version") == "v3"]
        assert all(e.workload_name == "reviews-v3" for e in v3)
    assert counts[-3:] == [3, 7, 4]  # after bookinfo, after scaling to 5, after scaling back to 2
    reviews_updates = [u for u in sd.eds_updates if u.hostname == host and u.push]
    assert [len(u.endpoints) for u in reviews_updates] == [3, 7, 4]
    assert [u.at for u in reviews_updates] == [5.0, 10.0, 20.0]
    # scaling touches endpoints only: no service event after the Service was added
    assert [(e.at, e.event) for e in sd.service_events if e.hostname == host] == [(5.0, "add")]
