"""The whole server on the gateways trace, with real Envoys as the demo profile's gateways.

Ingress: an Envoy started as the ``istio-ingressgateway`` pod (a router proxy) listens where the
trace's Gateway ``bookinfo-gateway`` says and routes per the VirtualService ``bookinfo``.
Egress: the productpage sidecar asks for ``httpbin.example.com``; the trace's VirtualService sends
that to the ``istio-egressgateway`` pod, whose own Envoy forwards it to the ServiceEntry's endpoint,
a small app on a loopback address standing in for the external host.
Every address (pods, the external host) comes from the trace, never written here.
"""

from __future__ import annotations

import pytest
from envoy_harness import LoopThread, get, start_app, synced, wait_until

from mesh.agent.agent import EnvoyAgent
from mesh.agent.bootstrap import PodIdentity
from mesh.bootstrap import Server, ServerArgs
from mesh.bootstrap.args import DEFAULT_PORTS
from mesh.clock import RealClock

pytestmark = pytest.mark.envoy

EXTERNAL = "httpbin.example.com"
TO_EGRESS = "outbound|80|httpbin|istio-egressgateway.istio-system.svc.cluster.local"
TO_EXTERNAL = f"outbound|80||{EXTERNAL}"


def proxy_id(agent: EnvoyAgent) -> str:
    return f"{agent.pod.name}.{agent.pod.namespace}"


@pytest.fixture(scope="module")
def mesh():
    loop = LoopThread()
    state: dict = {"agents": {}, "apps": []}

    async def up():
        server = Server(ServerArgs(trace="gateways", speed=0, clock=RealClock(), loopback_addresses=True,
                                   ports={name: 0 for name in DEFAULT_PORTS}))
        server.run_all()
        await server.start()
        state["server"] = server
        pods = server.kube_client.informer("pods")
        await wait_until(lambda: len(pods.list("default")) == 6 and len(pods.list("istio-system")) == 3,
                         timeout=20, what="bookinfo and the gateway pods")
        await wait_until(lambda: any(s.hostname == EXTERNAL for s in server.ads.push_context.services),
                         timeout=20, what="the ServiceEntry in a push")
        for pod in pods.list("default"):
            labels = pod["metadata"]["labels"]
            name = f"{labels['app']}-{labels['version']}"
            state["apps"].append(await start_app(pod["status"]["podIP"], 9080, name))
        [endpoint] = server.ads.push_context.endpoints(EXTERNAL, 80)  # the ServiceEntry's, from the trace
        state["apps"].append(await start_app(endpoint.address, endpoint.endpoint_port, EXTERNAL))
        by_label = {p["metadata"]["labels"].get("istio"): p for p in pods.list("istio-system")}
        productpage = next(p for p in pods.list("default") if p["metadata"]["labels"]["app"] == "productpage")
        for role, pod, kind in (("ingress", by_label["ingressgateway"], "router"),
                                ("egress", by_label["egressgateway"], "router"),
                                ("sidecar", productpage, "sidecar")):
            ident = PodIdentity.from_pod(pod, kind)
            # the per-cluster counters read below are outside Istio's default stats matcher
            ident.annotations["sidecar.istio.io/statsInclusionPrefixes"] = "cluster.outbound"
            agent = EnvoyAgent(ident, "127.0.0.1", server.bound_ports["xds"])
            state["agents"][role] = agent  # registered first, so a failed start is still stopped
            await agent.start()
        for agent in state["agents"].values():
            await agent.wait_ready()
            await wait_until(lambda a=agent: synced(server.ads, proxy_id(a)), timeout=20, what=f"{proxy_id(agent)} synced")

    async def down():
        for agent in state["agents"].values():
            await agent.stop()
            agent.cleanup()
        for runner in state["apps"]:
            await runner.cleanup()
        if "server" in state:
            await state["server"].stop()

    try:
        loop.run(up(), timeout=90)
        yield loop, state
    finally:
        loop.run(down(), timeout=30)
        loop.close()


def test_ingress_gateway_listens_on_the_gateway_port_and_routes_by_path(mesh):
    loop, state = mesh
    gateway = state["agents"]["ingress"]
    at = (gateway.pod.ip, 8080)  # bookinfo-gateway's server port (no Service port 8080: taken as written)
    for host in ("bookinfo.example.com", "anything"):  # the server's hosts are "*"
        status, body, _ = loop.run(get(at, host, "/productpage"))
        assert status == 200 and body["app"] == "productpage-v1", (host, status, body)
    apps = {loop.run(get(at, "bookinfo.example.com", "/reviews/0"))[1]["app"] for _ in range(12)}
    assert apps and apps <= {"reviews-v1", "reviews-v2", "reviews-v3"}, apps
    status, _, _ = loop.run(get(at, "bookinfo.example.com", "/ratings/0"))
    assert status == 404  # the VirtualService routes /productpage and /reviews only
    routes = _dump(loop, gateway, "RoutesConfigDump")["dynamic_route_configs"]
    assert [r["route_config"]["name"] for r in routes] == ["http.8080"]


def test_egress_gateway_listens_on_the_service_target_port(mesh):
    loop, state = mesh
    gateway = state["agents"]["egress"]
    listeners = [li["active_state"]["listener"]
                 for li in _dump(loop, gateway, "ListenersConfigDump")["dynamic_listeners"]]
    # The Gateway says port 80; the egress gateway's Service maps 80 to targetPort 8080.
    assert [li["address"]["socket_address"]["port_value"] for li in listeners] == [8080]


def test_sidecar_reaches_the_external_host_only_through_the_egress_gateway(mesh):
    loop, state = mesh
    sidecar, egress = state["agents"]["sidecar"], state["agents"]["egress"]
    for host in (EXTERNAL, f"{EXTERNAL}:80"):
        status, body, _ = loop.run(get(sidecar.proxy_address, host, "/headers"))
        assert status == 200 and body["app"] == EXTERNAL, (host, status, body)
        # Only the egress gateway's route (match gateways: [istio-egressgateway]) sets this header.
        assert body["headers"].get("x-egress-gateway") == "istio-egressgateway"
        assert body["headers"]["Host"] == host  # the host the app asked for, kept on every hop
    # Both hops show in the Envoys' own counters: sidecar → egress gateway → the external cluster.
    sidecar_stats, egress_stats = loop.run(sidecar.admin("/stats")), loop.run(egress.admin("/stats"))
    assert _counter(sidecar_stats, f"cluster.{TO_EGRESS}.upstream_rq_200") >= 2
    assert _counter(egress_stats, f"cluster.{TO_EXTERNAL}.upstream_rq_200") >= 2
    assert _counter(sidecar_stats, f"cluster.{TO_EXTERNAL}.upstream_rq_total") == 0  # never direct


def test_the_egress_gateway_serves_its_host_only(mesh):
    loop, state = mesh
    at = (state["agents"]["egress"].pod.ip, 8080)
    status, _, _ = loop.run(get(at, "bookinfo.example.com", "/productpage"))
    assert status == 404  # the egress gateway's server is for httpbin.example.com only


def _dump(loop, agent: EnvoyAgent, kind: str) -> dict:
    """One section of Envoy's /config_dump, found by its type rather than its position."""
    dump = loop.run(agent.config_dump())
    return next(c for c in dump["configs"] if c["@type"].endswith(f".{kind}"))


def _counter(stats: str, name: str) -> int:
    for line in stats.splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return 0
