"""Real Envoy under a Sidecar with an ``ingress`` listener, and with two DestinationRules for one host.

One Envoy (mesh's loopback sidecar, INTERCEPTION_MODE=NONE) on a loopback subnet of this module's
own. Without capture istiod builds no inbound listener from the pod's Service ports; a Sidecar
``ingress`` listener declares one, and Envoy binds it: here ``<pod-ip>:9081`` in front of the app on
``<pod-ip>:9080`` (``defaultEndpoint: 0.0.0.0:9080`` is "the pod's own address"). Its config_dump
shows that listener and the STATIC ``inbound|9081||`` cluster, and a request to 9081 reaches the app.

Then two DestinationRules for ``reviews`` in one namespace, each with one subset: istiod merges
them, so Envoy has a cluster per subset of both, and a VirtualService can route to a subset that
only the second rule names.
"""

from __future__ import annotations

import asyncio
import random

import aiohttp
import pytest
from envoy_harness import LoopThread, OneSidecar, running, split, start_app_set
from xds_fakes import endpoint

from mesh.agent.bootstrap import PodIdentity
from mesh.config.validation import errors, validate

pytestmark = pytest.mark.envoy

PROXY_ID = "productpage-v1-ing.default"
NET = f"127.78.{random.randint(100, 250)}"  # a subnet of its own per run
POD_IP = f"{NET}.1"
REVIEWS = "reviews.default.svc.cluster.local"
REVIEWS_PODS = {f"{NET}.5": "v1", f"{NET}.6": "v2"}


class World(OneSidecar):
    def __init__(self, lt: LoopThread):
        pod = PodIdentity("productpage-v1-ing", "default", POD_IP, {"app": "productpage", "version": "v1"})
        super().__init__(lt, pod, PROXY_ID)
        self.registry.add_service("productpage")
        self.registry.set_endpoints("productpage.default.svc.cluster.local", 9080,
                                    [endpoint(POD_IP, app="productpage")])
        self.registry.add_service("reviews")
        self.registry.set_endpoints(REVIEWS, 9080, [endpoint(ip, version=v) for ip, v in REVIEWS_PODS.items()])

    async def start_apps(self) -> list:
        return await start_app_set({POD_IP: (9080, "productpage"),
                                    **{ip: (9080, f"reviews-{v}") for ip, v in REVIEWS_PODS.items()}})

    async def apply(self, kind: str, name: str, spec: dict):
        obj = {"apiVersion": "networking.istio.io/v1beta1", "kind": kind,
               "metadata": {"name": name, "namespace": "default"}, "spec": spec}
        assert not errors(validate(obj)), errors(validate(obj))  # only what istiod would accept
        await self.change(kind, name, spec)
        await self.synced()

    async def dump_until(self, found) -> dict:
        """Envoy's config_dump once ``found(dump)`` holds (a pushed listener warms before it is active)."""
        dump = {}
        for _ in range(100):
            dump = await self.agent.config_dump()
            if found(dump):
                return dump
            await asyncio.sleep(0.1)
        return dump


def dynamic(dump: dict, section: str, key: str) -> dict[str, dict]:
    """Active listeners or clusters of a config_dump by name."""
    out = {}
    for config in dump["configs"]:
        for entry in config.get(section, []):
            body = entry.get("active_state", {}).get(key) or entry.get(key)
            if body:
                out[body["name"]] = body
    return out


@pytest.fixture(scope="module")
def world():
    yield from running(World)


def test_an_ingress_listener_sidecar_in_envoys_config_dump(world):
    lt = world.lt
    lt.run(world.apply("Sidecar", "productpage", {
        "workloadSelector": {"labels": {"app": "productpage"}},
        "ingress": [{"port": {"number": 9081, "protocol": "HTTP", "name": "http"},
                     "bind": POD_IP, "defaultEndpoint": "0.0.0.0:9080"}]}))
    name = f"{POD_IP}_9081"
    dump = lt.run(world.dump_until(lambda d: name in dynamic(d, "dynamic_listeners", "listener")))
    listeners = dynamic(dump, "dynamic_listeners", "listener")
    assert listeners[name]["address"]["socket_address"] == {"address": POD_IP, "port_value": 9081}
    assert "virtualInbound" not in listeners  # the ingress listener is the inbound side now
    clusters = dynamic(dump, "dynamic_active_clusters", "cluster")
    inbound = clusters["inbound|9081||"]
    assert inbound["type"] == "STATIC"
    endpoint_address = inbound["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert endpoint_address["socket_address"] == {"address": POD_IP, "port_value": 9080}
    assert not any(n.startswith("inbound|9080") for n in clusters)

    async def through_ingress() -> tuple[int, dict]:
        async with aiohttp.ClientSession() as session, session.get(f"http://{POD_IP}:9081/") as r:
            return r.status, await r.json()

    status, body = lt.run(through_ingress())
    assert (status, body["app"]) == (200, "productpage")
    assert body["headers"].get("X-Forwarded-Client-Cert") is None  # plaintext: no peer certificate
    assert "x-request-id" in {k.lower() for k in body["headers"]}  # it went through Envoy's HCM


def test_two_destination_rules_merge_into_one_cluster_per_subset(world):
    lt = world.lt
    lt.run(world.apply("DestinationRule", "reviews-v1", {
        "host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}))
    lt.run(world.apply("DestinationRule", "reviews-v2", {
        "host": "reviews", "subsets": [{"name": "v2", "labels": {"version": "v2"}}]}))
    wanted = {f"outbound|9080|{s}|{REVIEWS}" for s in ("", "v1", "v2")}
    dump = lt.run(world.dump_until(lambda d: wanted <= set(dynamic(d, "dynamic_active_clusters", "cluster"))))
    clusters = dynamic(dump, "dynamic_active_clusters", "cluster")
    assert {n for n in clusters if n.endswith(REVIEWS)} == wanted
    # both subset clusters carry the merged rule's name: the older rule's metadata
    for subset in ("v1", "v2"):
        meta = clusters[f"outbound|9080|{subset}|{REVIEWS}"]["metadata"]["filter_metadata"]["istio"]
        assert meta["config"].endswith("/destination-rule/reviews-v1") and meta["subset"] == subset
    # a VirtualService can use the subset only the second rule declares
    lt.run(world.apply("VirtualService", "reviews", {
        "hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": "v2"}}]}]}))
    assert lt.run(split(world.agent.proxy_address, "reviews:9080", 10)) == {"reviews-v2": 10}
