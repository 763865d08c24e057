"""Real Envoy under a Sidecar resource: its CDS holds only the egress hosts, traffic to them still
routes, and a host outside the scope is not reachable.

mesh's loopback sidecar (INTERCEPTION_MODE=NONE, like the rest of the Envoy tests) has no
original-destination path: its catch-all virtual host always blocks (``block_all``, 502), so an
out-of-scope host gets 502 here whatever ``outboundTrafficPolicy`` says; the policy's effect on the
captured layout (PassthroughCluster vs BlackHole) is checked without Envoy in test_sidecar_scope.py.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from envoy_harness import LoopThread, get, split, start_app, synced, wait_until
from xds_fakes import FakeConfigStore, FakeRegistry, endpoint

from mesh.agent.agent import EnvoyAgent
from mesh.agent.bootstrap import PodIdentity
from mesh.clock import RealClock
from mesh.model.push_request import ConfigKey, PushRequest, TriggerReason
from mesh.xds.ads import AdsServer
from mesh.xds.discovery import DiscoveryServer

pytestmark = pytest.mark.envoy

PROXY_ID = "productpage-v1-abc.default"
NET = f"127.10.{random.randint(100, 250)}"
REVIEWS, RATINGS = "reviews.default.svc.cluster.local", "ratings.other.svc.cluster.local"


def _outbound_clusters(dump: dict) -> set[str]:
    out = set()
    for section in dump["configs"]:
        for key in ("dynamic_active_clusters", "dynamic_warming_clusters"):
            for c in section.get(key, []):
                name = c["cluster"]["name"]
                if name.startswith("outbound|"):
                    out.add(name.rsplit("|", 1)[1])
    return out


@pytest.fixture(scope="module")
def scoped():
    lt = LoopThread()
    reg, store = FakeRegistry(), FakeConfigStore()
    reg.add_service("productpage")
    reg.set_endpoints("productpage.default.svc.cluster.local", 9080, [endpoint(f"{NET}.1", app="productpage")])
    reg.add_service("reviews")
    reg.set_endpoints(REVIEWS, 9080, [endpoint(f"{NET}.2", app="reviews")])
    reg.add_service("ratings", namespace="other")
    reg.set_endpoints(RATINGS, 9080, [endpoint(f"{NET}.3", app="ratings")])
    state = {}

    async def start():
        state["discovery"] = discovery = DiscoveryServer(RealClock())
        discovery.start()
        state["ads"] = ads = AdsServer(discovery, None, reg, store)
        port = await ads.start("127.0.0.1", 0)
        state["apps"] = [await start_app(f"{NET}.2", 9080, "reviews"), await start_app(f"{NET}.3", 9080, "ratings")]
        pod = PodIdentity("productpage-v1-abc", "default", f"{NET}.1", {"app": "productpage"})
        state["agent"] = agent = await EnvoyAgent(pod, "127.0.0.1", port).start()
        await agent.wait_ready()
        await wait_until(lambda: synced(ads, PROXY_ID), what="first sync")

    async def stop():
        if "agent" in state:
            await state["agent"].stop()
            state["agent"].cleanup()
        if "ads" in state:
            await state["ads"].stop()
            state["discovery"].stop()
        for app in state.get("apps", []):
            await app.cleanup()

    try:
        lt.run(start())
        yield lt, store, state
    finally:
        lt.run(stop())
        lt.close()


def test_a_scoped_sidecar_holds_only_its_egress_hosts_and_still_routes(scoped):
    lt, store, state = scoped
    agent, ads, discovery = state["agent"], state["ads"], state["discovery"]
    proxy = agent.proxy_address
    assert _outbound_clusters(lt.run(agent.config_dump())) >= {REVIEWS, RATINGS}
    assert lt.run(split(proxy, "ratings.other:9080", 5)) == {"ratings": 5}

    store.apply("Sidecar", "default", "default", {"egress": [{"hosts": ["./*"]}]})
    before = ads.push_context.version
    discovery.config_update(PushRequest.of(TriggerReason.CONFIG, configs={ConfigKey("Sidecar", "default", "default")}))
    lt.run(wait_until(lambda: ads.push_context.version != before, what="the debounced push"))
    lt.run(wait_until(lambda: synced(ads, PROXY_ID), what="Envoy to ACK the scoped config"))

    async def clusters_become(expected: set[str]) -> set[str]:
        for _ in range(100):  # Envoy drops removed clusters once the CDS response is applied
            found = _outbound_clusters(await agent.config_dump())
            if found == expected:
                return found
            await asyncio.sleep(0.1)
        return found

    expected = {REVIEWS, "productpage.default.svc.cluster.local"}
    assert lt.run(clusters_become(expected)) == expected  # ratings.other is out of the egress hosts
    assert lt.run(split(proxy, "reviews:9080", 10)) == {"reviews": 10}  # in scope: still routes
    status, _, _ = lt.run(get(proxy, "ratings.other:9080"))
    assert status == 502  # out of scope: no virtual host, the catch-all blocks
