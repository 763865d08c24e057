"""The whole server (all 16 stages + Server.start) on the canary trace, with a real Envoy sidecar:
the trace's VirtualService weight shifts reach Envoy through debounce → push → ADS, and the
measured traffic split follows each weight."""

from __future__ import annotations

import json
import urllib.request

import pytest
from envoy_harness import LoopThread, start_app, synced, wait_until

from mesh.agent.agent import EnvoyAgent
from mesh.agent.bootstrap import PodIdentity
from mesh.bootstrap import Server, ServerArgs
from mesh.bootstrap.args import DEFAULT_PORTS
from mesh.clock import RealClock
from mesh.demo.e2e import measure_split

pytestmark = pytest.mark.envoy

REQUESTS = 400
SPEED = 2.0  # trace seconds per real second: the steps are 5 s apart, time enough to measure each


@pytest.fixture(scope="module")
def mesh_on_canary():
    loop = LoopThread()
    state: dict = {}

    async def up():
        # the canary trace at SPEED× real time: its weight shifts arrive while Envoy is connected
        server = Server(ServerArgs(trace="canary", speed=SPEED, clock=RealClock(), loopback_addresses=True,
                                   ports={name: 0 for name in DEFAULT_PORTS}))
        server.run_all()
        await server.start()
        state["server"] = server
        pods = server.kube_client.informer("pods")
        await wait_until(lambda: len(pods.list("default")) == 6, timeout=20, what="bookinfo pods")
        apps = {}
        for pod in pods.list("default"):
            labels = pod["metadata"]["labels"]
            name = f"{labels['app']}-{labels['version']}"
            apps[name] = await start_app(pod["status"]["podIP"], 9080, name)
        state["apps"] = apps
        productpage = next(p for p in pods.list("default") if p["metadata"]["labels"]["app"] == "productpage")
        agent = EnvoyAgent(PodIdentity.from_pod(productpage), "127.0.0.1", server.bound_ports["xds"])
        await agent.start()
        await agent.wait_ready()
        state["agent"] = agent

    loop.run(up(), timeout=60)
    yield loop, state

    async def down():
        if "agent" in state:
            await state["agent"].stop()
            state["agent"].cleanup()
        for runner in state.get("apps", {}).values():
            await runner.cleanup()
        if "server" in state:
            await state["server"].stop()

    loop.run(down(), timeout=30)
    loop.close()


def test_all_sixteen_stages_run_and_ports_are_bound(mesh_on_canary):
    _loop, state = mesh_on_canary
    server = state["server"]
    assert server.completed == Server.stages()
    assert {"debug", "xds", "secure_xds", "monitoring", "webhook"} <= set(server.bound_ports)
    with urllib.request.urlopen(f"http://127.0.0.1:{server.bound_ports['monitoring']}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert "pilot_xds" in metrics


def test_canary_weights_shift_the_measured_split(mesh_on_canary):
    loop, state = mesh_on_canary
    server, agent = state["server"], state["agent"]
    proxy_id = f"{agent.pod.name}.{agent.pod.namespace}"
    steps = [(10, {"reviews-v1": 1.0}), (20, {"reviews-v1": 0.9, "reviews-v3": 0.1}),
             (30, {"reviews-v1": 0.5, "reviews-v3": 0.5}), (40, {"reviews-v3": 1.0})]
    for t, weights in steps:
        # wait until the trace has applied the VirtualService of this step and Envoy has ACKed it
        loop.run(wait_until(lambda t=t: server.clock.now() * SPEED >= t + 0.5, timeout=60,
                            what=f"trace time {t}"), timeout=70)
        loop.run(wait_until(lambda: synced(server.ads, proxy_id), timeout=15, what="Envoy synced"), timeout=20)
        # a fresh sample of 400 when one misses (see measure_split): a wrong weight fails them all
        counts = loop.run(measure_split(agent.proxy_address, "reviews:9080", REQUESTS, weights), timeout=120)
        for app, share in weights.items():
            measured = counts[app] / REQUESTS
            assert abs(measured - share) <= 0.05, (t, counts)
        assert sum(counts.values()) == REQUESTS and set(counts) <= set(weights)


def test_debug_endpoints_show_the_connected_proxy(mesh_on_canary):
    _loop, state = mesh_on_canary
    server = state["server"]
    base = f"http://127.0.0.1:{server.bound_ports['debug']}"
    with urllib.request.urlopen(f"{base}/debug/syncz", timeout=5) as r:
        syncz = json.loads(r.read())
    assert any(entry.get("proxy", "").startswith("productpage") for entry in syncz), syncz
