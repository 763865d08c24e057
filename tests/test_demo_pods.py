"""Where the demo's pods run (mesh.demo.podmode): the mode choice, and bookinfo's pods as network
namespaces on their trace IPs, istio-init applied from the injected pods, apps inside them,
productpage reached from 127.0.0.1 through a port-forward and through the ingress gateway, and nothing
left after stop."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request

import pytest

from mesh.cni.ip import netns_names, unavailable
from mesh.demo import podmode
from mesh.demo.runner import BookinfoDemo, DemoOptions

ZERO_PORTS = dict.fromkeys(["xds", "secure_xds", "monitoring", "webhook", "debug"], 0)


def test_the_mode_is_chosen_once_with_a_reason(monkeypatch):
    assert podmode.choose("loopback") == podmode.Mode("loopback", "asked for")
    assert podmode.choose("auto", subnet="127.10.7").name == "loopback"  # --subnet is a loopback option
    with pytest.raises(ValueError, match="expected one of auto, netns, loopback"):
        podmode.choose("containers")
    monkeypatch.setattr(podmode, "unavailable", lambda: "not root (...)")
    assert podmode.choose("auto") == podmode.Mode("loopback", "not root (...)")
    with pytest.raises(RuntimeError, match="--pods netns: not root"):
        podmode.choose("netns")
    monkeypatch.setattr(podmode, "unavailable", lambda: None)
    assert podmode.choose("auto").name == "netns"
    assert "10.244.0.x" in podmode.choose("auto").describe()


def test_istio_init_args_come_from_the_injected_pod():
    pod = {"spec": {"initContainers": [{"name": "istio-init", "args": ["istio-iptables", "-p", "15001"]}]}}
    assert podmode.istio_init_args(pod) == ["istio-iptables", "-p", "15001"]
    assert podmode.istio_init_args({"spec": {"initContainers": [{"name": "istio-validation"}]}}) is None
    assert podmode.istio_init_args({"spec": {}}) is None


@pytest.mark.skipif(unavailable() is not None, reason=f"pods as network namespaces: {unavailable()}")
def test_bookinfo_pods_as_network_namespaces():
    # speed 5: the pods are created after the injector is up, so they carry istio-init (as in `make serve`)
    demo = BookinfoDemo(DemoOptions(trace="bookinfo", speed=5, pods="netns", ports=dict(ZERO_PORTS)))

    async def run() -> tuple[dict, dict, str, str, list[str]]:
        await demo.start(timeout=60)
        try:
            pods = {key: (p.ip, p.app.sandbox.netns) for key, p in demo.pods.items()}
            url = demo.forward_urls()["productpage"]
            body = await asyncio.to_thread(lambda: json.loads(urllib.request.urlopen(url, timeout=10).read()))
            # `make serve`'s way in: 127.0.0.1 → the ingress gateway's 8080 → bookinfo-gateway's route
            # for /productpage (the gateway's Envoy gets it once the VirtualService is pushed)
            via_gateway = demo.forward_urls()["istio-ingressgateway"] + "productpage"
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                try:
                    gateway_body = await asyncio.to_thread(
                        lambda: json.loads(urllib.request.urlopen(via_gateway, timeout=10).read()))
                    break
                except OSError:  # 404 until the route arrives
                    assert asyncio.get_running_loop().time() < deadline, "the gateway never routed /productpage"
                    await asyncio.sleep(0.2)
            assert gateway_body["app"] == "productpage" and gateway_body["calls"]["reviews"]["app"] == "reviews"
            netns = pods[demo.pod("productpage").proxy_id][1]
            rules = subprocess.run(["ip", "netns", "exec", netns, "iptables-save", "-t", "nat"],
                                   capture_output=True, text=True, check=True).stdout
            hosts = subprocess.run(["ip", "netns", "exec", netns, "getent", "hosts", "reviews.default.svc.cluster.local"],
                                   capture_output=True, text=True, check=False).stdout
            return pods, body, rules, hosts, demo.curl_commands()
        finally:
            await demo.stop()

    pods, body, rules, hosts, commands = asyncio.run(run())
    assert demo.mode.name == "netns" and len(pods) == 7  # bookinfo's six and the ingress gateway
    for key, (ip, netns) in pods.items():
        assert ip.startswith("10.244.0.") and netns.endswith("-" + key)  # the trace's own pod IP, in its namespace
        assert netns not in netns_names()  # gone after stop
    assert body["app"] == "productpage" and body["pod"].startswith("productpage-v1-")
    assert "-A ISTIO_OUTPUT -j ISTIO_REDIRECT" in rules and "--dport 15020 -j RETURN" in rules
    assert hosts.split()[0].startswith("10.96.0.")
    assert commands[0].startswith("python -m mesh exec productpage-v1-") and "http://productpage:9080/" in commands[0]


def test_proxy_for_pod_captured_is_a_cluster_sidecar_and_gets_istiods_redirect_layout():
    from mesh.bootstrap import Server, ServerArgs
    from mesh.demo.pods import proxy_for_pod
    from mesh.networking.push_context import PushContext
    from mesh.teach.xds_view import initial_config
    from mesh.xds.types import LISTENER

    server = Server(ServerArgs(trace="bookinfo")).run_until("init_generators")
    server.clock.advance_to(5)
    env = server.environment
    pod = server.kube_client.get("Pod", "productpage-v1-74bf455775-fvvbv", "default")
    push = PushContext.build(env.service_discovery, env.config_store, domain=env.domain_suffix)
    listeners = {}
    for captured in (False, True):
        proxy = proxy_for_pod(pod, env.domain_suffix, captured=captured)
        assert proxy.captured is captured and ("HTTP_PROXY_PORT" in proxy.metadata) is not captured
        listeners[captured] = {r.name for r in initial_config(proxy, push, server.xds_generators)[LISTENER]}
    server.close()
    assert {"virtualOutbound", "virtualInbound", "0.0.0.0_9080"} <= listeners[True]
    assert "virtualOutbound" not in listeners[False] and "10.244.0.8_15080" in listeners[False]
