"""Real Envoy, real HTTP: the sidecar's config comes from our ADS server and traffic follows it.

One Envoy (the sidecar of productpage) and three tiny apps (reviews v1, v2, v3) on loopback pod
IPs share the module; each test changes config, waits for Envoy to ACK it, then sends requests.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from envoy_harness import LoopThread, OneSidecar, get, split, start_app, synced, wait_until
from xds_fakes import endpoint

from mesh.agent.agent import EnvoyAgent
from mesh.agent.bootstrap import PodIdentity
from mesh.model.push_request import ConfigKey, PushRequest, TriggerReason
from mesh.xds.ads import AdsServer
from mesh.xds.debug import config_dump, proxy_status
from mesh.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

pytestmark = pytest.mark.envoy

PROXY_ID = "productpage-v1-abc.default"
REVIEWS = "reviews.default.svc.cluster.local"
# A subnet of its own per run, so two test runs on one machine do not fight over addresses.
NET = f"127.10.{random.randint(100, 250)}"
APPS = {f"{NET}.2": "v1", f"{NET}.3": "v2", f"{NET}.4": "v3"}


class Mesh(OneSidecar):
    """The pieces a test needs: registry, config, the discovery + ADS servers, one Envoy."""

    def __init__(self, lt: LoopThread):
        pod = PodIdentity("productpage-v1-abc", "default", f"{NET}.1", {"app": "productpage", "version": "v1"})
        super().__init__(lt, pod, PROXY_ID)
        self.registry.add_service("productpage")
        self.registry.set_endpoints("productpage.default.svc.cluster.local", 9080,
                                    [endpoint(f"{NET}.1", app="productpage")])
        self.registry.add_service("reviews")
        self.registry.set_endpoints(REVIEWS, 9080, [endpoint(f"{NET}.2", version="v1"),
                                                    endpoint(f"{NET}.3", version="v2")])
        self.store.apply("DestinationRule", "reviews", "default", {"host": "reviews", "subsets": [
            {"name": f"v{i}", "labels": {"version": f"v{i}"}} for i in (1, 2, 3)]})

    async def start_apps(self) -> list:
        return [await start_app(ip, 9080, f"reviews-{v}") for ip, v in APPS.items()]

    def sends(self, type_url: str) -> int:
        return self.ads.connection(PROXY_ID).sends[type_url]


@pytest.fixture(scope="module")
def mesh():
    lt = LoopThread()
    m = Mesh(lt)
    lt.run(m.start())
    yield m
    lt.run(m.stop())
    lt.close()


def weights(v1: int, v2: int) -> dict:
    return {"hosts": ["reviews"], "http": [{"name": "split", "route": [
        {"destination": {"host": "reviews", "subset": "v1"}, "weight": v1},
        {"destination": {"host": "reviews", "subset": "v2"}, "weight": v2}]}]}


def test_routes_by_host_header_through_the_sidecar(mesh):
    proxy = mesh.agent.proxy_address
    for host in ("reviews:9080", f"{REVIEWS}:9080", "reviews.default:9080"):
        counts = mesh.lt.run(split(proxy, host, 20))
        assert set(counts) <= {"reviews-v1", "reviews-v2"} and sum(counts.values()) == 20, (host, counts)
    status, _, _ = mesh.lt.run(get(proxy, "unknown:9080"))
    assert status == 502  # block_all: nothing leaves for an unknown host


def test_virtual_service_weights_shift_traffic(mesh):
    proxy = mesh.agent.proxy_address
    mesh.lt.run(mesh.change("VirtualService", "reviews", weights(100, 0)))
    mesh.lt.run(mesh.synced())
    assert mesh.lt.run(split(proxy, "reviews:9080", 40)) == {"reviews-v1": 40}
    mesh.lt.run(mesh.change("VirtualService", "reviews", weights(0, 100)))
    mesh.lt.run(mesh.synced())
    assert mesh.lt.run(split(proxy, "reviews:9080", 40)) == {"reviews-v2": 40}
    mesh.lt.run(mesh.change("VirtualService", "reviews", weights(50, 50)))
    mesh.lt.run(mesh.synced())
    counts = mesh.lt.run(split(proxy, "reviews:9080", 200))
    assert sum(counts.values()) == 200 and 60 <= counts["reviews-v1"] <= 140, counts


def test_fault_and_header_manipulation_reach_envoy(mesh):
    proxy = mesh.agent.proxy_address
    mesh.lt.run(mesh.change("VirtualService", "reviews", {"hosts": ["reviews"], "http": [
        {"name": "teapot", "match": [{"uri": {"prefix": "/teapot"}}],
         "fault": {"abort": {"httpStatus": 418, "percentage": {"value": 100}}},
         "route": [{"destination": {"host": "reviews", "subset": "v1"}}]},
        {"name": "rest", "headers": {"request": {"set": {"x-mesh": "yes"}}, "response": {"add": {"x-from": "mesh"}}},
         "route": [{"destination": {"host": "reviews", "subset": "v2"}}]}]}))
    mesh.lt.run(mesh.synced())
    status, _, _ = mesh.lt.run(get(proxy, "reviews:9080", "/teapot"))
    assert status == 418
    status, body, headers = mesh.lt.run(get(proxy, "reviews:9080", "/other"))
    assert status == 200 and body["app"] == "reviews-v2"
    assert body["headers"].get("x-mesh") == "yes" and headers.get("x-from") == "mesh"


def test_rejected_config_is_nacked_not_resent_and_old_config_keeps_serving(mesh):
    proxy = mesh.agent.proxy_address
    mesh.lt.run(mesh.change("VirtualService", "reviews", weights(100, 0)))
    mesh.lt.run(mesh.synced())
    con = mesh.ads.connection(PROXY_ID)
    good_version = con.watched[ROUTE].version_acked
    rejects = mesh.ads.rejects["RDS"]
    bad = {"hosts": ["reviews"], "http": [{"match": [{"uri": {"regex": "(("}}],  # not a valid RE2
                                          "route": [{"destination": {"host": "reviews", "subset": "v2"}}]}]}
    mesh.lt.run(mesh.change("VirtualService", "reviews", bad))
    mesh.lt.run(wait_until(lambda: mesh.ads.rejects["RDS"] > rejects, what="the NACK"))
    watched = con.watched[ROUTE]
    assert watched.last_error  # Envoy says why; the wording is Envoy's and not matched here
    [row] = proxy_status(mesh.ads)
    assert (row["RDS"], row["CDS"]) == ("STALE", "SYNCED")
    assert mesh.ads.metrics.registry.get_sample_value("pilot_total_xds_rejects_total", {"type": "rds"}) >= 1
    assert watched.version_acked == good_version
    sends = mesh.sends(ROUTE)
    mesh.lt.run(asyncio.sleep(0.5))
    assert mesh.sends(ROUTE) == sends  # the NACKed version is not sent again
    assert mesh.lt.run(split(proxy, "reviews:9080", 20)) == {"reviews-v1": 20}  # last good config
    # A fixed config recovers.
    mesh.lt.run(mesh.change("VirtualService", "reviews", weights(0, 100)))
    mesh.lt.run(mesh.synced())
    assert not con.watched[ROUTE].last_error
    assert proxy_status(mesh.ads)[0]["RDS"] == "SYNCED"
    assert mesh.lt.run(split(proxy, "reviews:9080", 20)) == {"reviews-v2": 20}


def test_scale_out_reaches_envoy_by_incremental_eds_alone(mesh):
    proxy = mesh.agent.proxy_address
    mesh.lt.run(mesh.change("VirtualService", "reviews", None))
    mesh.lt.run(mesh.synced())
    before = {t: mesh.sends(t) for t in (CLUSTER, ENDPOINT, LISTENER, ROUTE)}
    mesh.registry.set_endpoints(REVIEWS, 9080, [endpoint(ip, version=v) for ip, v in APPS.items()])
    mesh.discovery.config_update(PushRequest.of(TriggerReason.ENDPOINT, full=False,
                                                configs={ConfigKey("ServiceEntry", REVIEWS, "default")}))
    mesh.lt.run(wait_until(lambda: mesh.sends(ENDPOINT) > before[ENDPOINT], what="the EDS push"))
    mesh.lt.run(mesh.synced())
    assert {t: mesh.sends(t) - n for t, n in before.items()} == {CLUSTER: 0, ENDPOINT: 1, LISTENER: 0, ROUTE: 0}
    counts = mesh.lt.run(split(proxy, "reviews:9080", 60))
    assert set(counts) == {"reviews-v1", "reviews-v2", "reviews-v3"}, counts


def test_envoy_restart_and_server_restart_both_resync(mesh):
    proxy = mesh.agent.proxy_address
    # Envoy dies and comes back: a new stream, everything sent again.
    mesh.lt.run(mesh.agent.stop())
    mesh.lt.run(mesh.agent.start())
    mesh.lt.run(mesh.agent.wait_ready())
    mesh.lt.run(mesh.synced())
    status, body, _ = mesh.lt.run(get(proxy, "reviews:9080"))
    assert status == 200 and body["app"].startswith("reviews-")
    # The control plane restarts on the same port: Envoy reconnects by itself.
    old = mesh.ads.connection(PROXY_ID).number
    mesh.lt.run(mesh.ads.stop())
    mesh.ads = AdsServer(mesh.discovery, None, mesh.registry, mesh.store)
    mesh.lt.run(mesh.ads.start("127.0.0.1", mesh.port))
    mesh.lt.run(wait_until(lambda: synced(mesh.ads, PROXY_ID), timeout=15, what="Envoy to reconnect"))
    assert mesh.ads.connection(PROXY_ID).number != old
    status, body, _ = mesh.lt.run(get(proxy, "reviews:9080"))
    assert status == 200


def test_destination_rule_change_adds_a_subset_that_envoy_warms_and_uses(mesh):
    proxy = mesh.agent.proxy_address
    mesh.registry.set_endpoints(REVIEWS, 9080, [endpoint(ip, version=v) for ip, v in APPS.items()])
    mesh.lt.run(mesh.change("DestinationRule", "reviews", {
        "host": "reviews", "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}},
        "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "odd", "labels": {"version": "v3"}}]}))
    mesh.lt.run(mesh.change("VirtualService", "reviews", {"hosts": ["reviews"], "http": [
        {"route": [{"destination": {"host": "reviews", "subset": "odd"}}]}]}))
    mesh.lt.run(mesh.synced())
    con = mesh.ads.connection(PROXY_ID)
    assert f"outbound|9080|odd|{REVIEWS}" in con.watched[ENDPOINT].names  # Envoy subscribed to the new cluster
    assert mesh.lt.run(split(proxy, "reviews:9080", 20)) == {"reviews-v3": 20}
    clusters = mesh.lt.run(mesh.agent.admin("/clusters?format=json"))
    assert f"outbound|9080|odd|{REVIEWS}" in clusters and f"{NET}.4" in clusters
    # istiod's view of the proxy (/debug/config_dump) agrees with Envoy's own, section by section.
    ours = config_dump(mesh.ads, PROXY_ID)["configs"][1]["dynamic_active_clusters"]
    envoys = mesh.lt.run(mesh.agent.config_dump())["configs"][1]["dynamic_active_clusters"]
    assert {c["cluster"]["name"] for c in ours} == {c["cluster"]["name"] for c in envoys}


def test_ingress_gateway_routes_per_gateway_and_virtual_service(mesh):
    mesh.lt.run(mesh.change("DestinationRule", "reviews", {"host": "reviews", "subsets": [
        {"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]}))
    mesh.lt.run(mesh.change("Gateway", "web", {"selector": {"istio": "ingressgateway"}, "servers": [
        {"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}))
    mesh.lt.run(mesh.change("VirtualService", "web", {"hosts": ["shop.example.com"], "gateways": ["web"], "http": [
        {"name": "reviews", "match": [{"uri": {"prefix": "/reviews"}}],
         "route": [{"destination": {"host": "reviews", "subset": "v2"}}]}]}))
    pod = PodIdentity("ingress-1", "istio-system", f"{NET}.9", {"istio": "ingressgateway"}, proxy_type="router")
    gateway = EnvoyAgent(pod, "127.0.0.1", mesh.port)
    try:
        mesh.lt.run(gateway.start())
        mesh.lt.run(gateway.wait_ready())
        mesh.lt.run(wait_until(lambda: synced(mesh.ads, "ingress-1.istio-system"), what="the gateway to sync"))
        at = (f"{NET}.9", 8080)
        status, body, _ = mesh.lt.run(get(at, "shop.example.com", "/reviews/1"))
        assert status == 200 and body["app"] == "reviews-v2"
        status, _, _ = mesh.lt.run(get(at, "shop.example.com", "/other"))
        assert status == 404  # no route for that path
        status, _, _ = mesh.lt.run(get(at, "elsewhere.example.com", "/reviews/1"))
        assert status == 404  # no virtual host for that name
    finally:
        mesh.lt.run(gateway.stop())
        gateway.cleanup()
