"""Real Envoy over Delta xDS (``api_type: DELTA_GRPC``), beside a SotW Envoy on the same server.

The sidecar of productpage speaks Delta, the sidecar of details speaks State of the World; both
route to reviews apps on loopback pod IPs (a /24 of this module's own, 127.88.x).
"""

from __future__ import annotations

import asyncio
import random

import pytest
from envoy_harness import (
    LoopThread,
    get,
    split,
    start_app,
    start_control_plane,
    stop_control_plane,
    synced,
    wait_until,
)
from xds_fakes import FakeConfigStore, FakeRegistry, endpoint

from mesh.agent.agent import EnvoyAgent
from mesh.agent.bootstrap import PodIdentity
from mesh.model.push_request import ConfigKey, PushRequest, TriggerReason
from mesh.xds.ads import AdsServer
from mesh.xds.debug import proxy_status
from mesh.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

pytestmark = pytest.mark.envoy

DELTA_ID, SOTW_ID = "productpage-v1-abc.default", "details-v1-abc.default"
REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.default.svc.cluster.local"
NET = f"127.88.{random.randint(100, 250)}"
APPS = {f"{NET}.2": "v1", f"{NET}.3": "v2", f"{NET}.4": "v3"}


class Mesh:
    def __init__(self):
        self.registry, self.store = FakeRegistry(), FakeConfigStore()
        for name, ip in (("productpage", f"{NET}.1"), ("details", f"{NET}.5"), ("ratings", f"{NET}.6")):
            self.registry.add_service(name)
            self.registry.set_endpoints(f"{name}.default.svc.cluster.local", 9080, [endpoint(ip, app=name)])
        self.registry.add_service("reviews")
        self.registry.set_endpoints(REVIEWS, 9080, [endpoint(f"{NET}.2", version="v1")])
        self.store.apply("DestinationRule", "reviews", "default", {"host": "reviews", "subsets": [
            {"name": f"v{i}", "labels": {"version": f"v{i}"}} for i in (1, 2, 3)]})
        self.agents, self.apps, self.ads, self.discovery = [], [], None, None

    async def start(self):
        try:
            self.discovery, self.ads, self.port = await start_control_plane(self.registry, self.store)
            self.apps = [await start_app(ip, 9080, f"reviews-{v}") for ip, v in APPS.items()]
            for name, ip, delta in (("productpage", f"{NET}.1", True), ("details", f"{NET}.5", False)):
                pod = PodIdentity(f"{name}-v1-abc", "default", ip, {"app": name, "version": "v1"})
                agent = await EnvoyAgent(pod, "127.0.0.1", self.port, delta=delta).start()
                self.agents.append(agent)
                await agent.wait_ready()
            self.delta_agent, self.sotw_agent = self.agents
            await self.synced()
        except BaseException:
            await self.stop()
            raise

    async def stop(self):
        for agent in self.agents:
            await agent.stop()
            agent.cleanup()
        await stop_control_plane(self.discovery, self.ads)
        for app in self.apps:
            await app.cleanup()

    async def synced(self):
        for proxy_id in (DELTA_ID, SOTW_ID):
            await wait_until(lambda p=proxy_id: synced(self.ads, p), what=f"{proxy_id} to ACK")

    def sends(self, proxy_id: str, type_url: str) -> int:
        return self.ads.connection(proxy_id).sends[type_url]

    def last_send(self, proxy_id: str, type_url: str) -> str:
        return [e for e in self.ads.connection(proxy_id).events if e.kind == "send" and e.type_url == type_url][-1].detail

    async def envoy_clusters(self, agent) -> set[str]:
        dump = await agent.config_dump()
        return {c["cluster"]["name"] for c in dump["configs"][1].get("dynamic_active_clusters", [])}


@pytest.fixture(scope="module")
def mesh():
    lt = LoopThread()
    m = Mesh()
    lt.run(m.start(), timeout=60)
    m.lt = lt
    yield m
    lt.run(m.stop())
    lt.close()


def test_both_protocols_route_through_their_sidecars(mesh):
    assert mesh.ads.connection(DELTA_ID).protocol == "delta"
    assert mesh.ads.connection(SOTW_ID).protocol == "sotw"
    for agent in mesh.agents:
        counts = mesh.lt.run(split(agent.proxy_address, "reviews:9080", 10))
        assert counts == {"reviews-v1": 10}, counts
        status, _, _ = mesh.lt.run(get(agent.proxy_address, "unknown:9080"))
        assert status == 502
    # Virtual services reach both.
    mesh.store.apply("VirtualService", "reviews", "default", {"hosts": ["reviews"], "http": [
        {"match": [{"uri": {"prefix": "/teapot"}}], "fault": {"abort": {"httpStatus": 418, "percentage": {"value": 100}}},
         "route": [{"destination": {"host": "reviews", "subset": "v1"}}]},
        {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]})
    mesh.discovery.config_update(PushRequest.of(TriggerReason.CONFIG, configs={
        ConfigKey("VirtualService", "reviews", "default")}))
    mesh.lt.run(wait_until(lambda: mesh.sends(DELTA_ID, ROUTE) > 1, what="the RDS push"))
    mesh.lt.run(mesh.synced())
    for agent in mesh.agents:
        status, _, _ = mesh.lt.run(get(agent.proxy_address, "reviews:9080", "/teapot"))
        assert status == 418


def test_scale_out_reaches_delta_envoy_as_one_assignment(mesh):
    before = {t: mesh.sends(DELTA_ID, t) for t in (CLUSTER, ENDPOINT, LISTENER, ROUTE)}
    mesh.registry.set_endpoints(REVIEWS, 9080, [endpoint(ip, version=v) for ip, v in APPS.items()])
    mesh.discovery.config_update(PushRequest.of(TriggerReason.ENDPOINT, full=False,
                                                configs={ConfigKey("ServiceEntry", REVIEWS, "default")}))
    mesh.lt.run(wait_until(lambda: mesh.sends(DELTA_ID, ENDPOINT) > before[ENDPOINT], what="the EDS push"))
    mesh.lt.run(mesh.synced())
    assert {t: mesh.sends(DELTA_ID, t) - n for t, n in before.items()} == {CLUSTER: 0, ENDPOINT: 1, LISTENER: 0, ROUTE: 0}
    # Only the reviews clusters whose endpoints changed (the service's and its v2/v3 subsets' —
    # v1's subset kept its one endpoint), nothing removed.
    added = int(mesh.last_send(DELTA_ID, ENDPOINT).split()[0])
    assert 1 <= added <= 3 and " 0 removed" in mesh.last_send(DELTA_ID, ENDPOINT)
    routes = mesh.sends(DELTA_ID, ROUTE)
    mesh.store.delete("VirtualService", "reviews", "default")
    mesh.discovery.config_update(PushRequest.of(TriggerReason.CONFIG, configs={
        ConfigKey("VirtualService", "reviews", "default")}))
    mesh.lt.run(wait_until(lambda: mesh.sends(DELTA_ID, ROUTE) > routes, what="the VirtualService removal"))
    mesh.lt.run(mesh.synced())
    for agent in mesh.agents:
        counts = mesh.lt.run(split(agent.proxy_address, "reviews:9080", 60))
        assert set(counts) == {"reviews-v1", "reviews-v2", "reviews-v3"}, counts


def test_deleting_a_service_removes_its_cluster_from_envoy(mesh):
    cluster = f"outbound|9080||{RATINGS}"
    assert cluster in mesh.lt.run(mesh.envoy_clusters(mesh.delta_agent))
    service = mesh.registry._services.pop(RATINGS)
    try:
        mesh.discovery.config_update(PushRequest.of(TriggerReason.SERVICE, configs={
            ConfigKey("ServiceEntry", RATINGS, "default")}))
        mesh.lt.run(wait_until(lambda: "removed" in mesh.last_send(DELTA_ID, CLUSTER)
                               and " 0 removed" not in mesh.last_send(DELTA_ID, CLUSTER), what="the CDS removal"))
        mesh.lt.run(mesh.synced())
        assert mesh.last_send(DELTA_ID, CLUSTER).startswith("0 resources, 1 removed")
        for agent in mesh.agents:
            assert cluster not in mesh.lt.run(mesh.envoy_clusters(agent))
    finally:
        mesh.registry._services[RATINGS] = service
        mesh.discovery.config_update(PushRequest.of(TriggerReason.SERVICE, configs={
            ConfigKey("ServiceEntry", RATINGS, "default")}))
        mesh.lt.run(wait_until(lambda: cluster in mesh.ads.connection(DELTA_ID).delta[CLUSTER].held, what="re-add"))
        mesh.lt.run(mesh.synced())


def test_nacked_delta_is_not_resent_and_proxy_status_shows_it(mesh):
    con = mesh.ads.connection(DELTA_ID)
    rejects = mesh.ads.rejects["RDS"]
    mesh.store.apply("VirtualService", "reviews", "default", {"hosts": ["reviews"], "http": [
        {"match": [{"uri": {"regex": "(("}}], "route": [{"destination": {"host": "reviews", "subset": "v2"}}]}]})
    mesh.discovery.config_update(PushRequest.of(TriggerReason.CONFIG, configs={
        ConfigKey("VirtualService", "reviews", "default")}))
    mesh.lt.run(wait_until(lambda: mesh.ads.rejects["RDS"] > rejects + 1, what="both NACKs"))  # one per Envoy
    assert con.watched[ROUTE].last_error
    row = {r["NAME"]: r for r in proxy_status(mesh.ads)}[DELTA_ID]
    assert (row["RDS"], row["CDS"]) == ("STALE", "SYNCED")
    sends = mesh.sends(DELTA_ID, ROUTE)
    mesh.discovery.config_update(PushRequest.of(TriggerReason.CONFIG, configs={
        ConfigKey("DestinationRule", "other", "default")}))  # a push that rebuilds routes unchanged
    mesh.lt.run(asyncio.sleep(1.0))
    assert mesh.sends(DELTA_ID, ROUTE) == sends  # the NACKed version is not sent again
    mesh.store.delete("VirtualService", "reviews", "default")
    mesh.discovery.config_update(PushRequest.of(TriggerReason.CONFIG, configs={
        ConfigKey("VirtualService", "reviews", "default")}))
    mesh.lt.run(wait_until(lambda: not con.watched[ROUTE].last_error, what="the fixed routes"))
    mesh.lt.run(mesh.synced())
    assert {r["NAME"]: r for r in proxy_status(mesh.ads)}[DELTA_ID]["RDS"] == "SYNCED"


def test_reconnect_resends_nothing_envoy_declares_it_holds(mesh):
    # istiod restarts on the same port; Envoy reconnects and lists what it holds.
    mesh.lt.run(mesh.ads.stop())
    mesh.ads = AdsServer(mesh.discovery, None, mesh.registry, mesh.store)
    mesh.lt.run(mesh.ads.start("127.0.0.1", mesh.port))
    mesh.lt.run(wait_until(lambda: synced(mesh.ads, DELTA_ID) and synced(mesh.ads, SOTW_ID), timeout=20,
                           what="both Envoys to reconnect"))
    con = mesh.ads.connection(DELTA_ID)
    reconnects = [e for e in con.events if e.kind == "reconnect"]
    assert {e.type_url for e in reconnects} >= {CLUSTER, LISTENER}
    first_sends = {}
    for e in con.events:
        if e.kind == "send":
            first_sends.setdefault(e.type_url, e.detail)
    assert first_sends[CLUSTER].startswith("0 resources, 0 removed"), first_sends
    assert first_sends[LISTENER].startswith("0 resources, 0 removed"), first_sends
    # The SotW proxy got everything again, as SotW must.
    sotw = mesh.ads.connection(SOTW_ID)
    assert not [e for e in sotw.events if e.kind == "send" and e.type_url == CLUSTER][0].detail.startswith("0 ")
    for agent in mesh.agents:
        counts = mesh.lt.run(split(agent.proxy_address, "reviews:9080", 30))
        assert set(counts) <= {"reviews-v1", "reviews-v2", "reviews-v3"} and sum(counts.values()) == 30


def test_envoy_restart_resyncs_over_delta(mesh):
    mesh.lt.run(mesh.delta_agent.stop())
    mesh.lt.run(mesh.delta_agent.start())
    mesh.lt.run(mesh.delta_agent.wait_ready())
    mesh.lt.run(mesh.synced())
    status, body, _ = mesh.lt.run(get(mesh.delta_agent.proxy_address, "reviews:9080"))
    assert status == 200 and body["app"].startswith("reviews-")
