"""``mesh demo`` in network-namespace mode, end to end (issue 11's "Done when"): every bookinfo pod
a network namespace with istio-init's iptables, its Envoy inside it (gid 1337, the REDIRECT layout)
behind the agent's XDS proxy; a request made inside productpage is captured (REDIRECT to 15001),
routed by the sidecar by the canary trace's weights, captured again in the reviews pod (15006)
and answered by its app. Real Envoy's own config_dump shows the layout, each feature next to the
Istio 1.19.0 line that generates it. Containment holds while it runs, and nothing is left after stop.

Needs root (CI runs as root); elsewhere skipped with the reason."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from envoy_harness import LoopThread

from mesh.cni import state
from mesh.cni.ip import ip_json, netns_names, root_exposure, unavailable
from mesh.demo.runner import BookinfoDemo, DemoOptions
from mesh.kube.trace import builtin_traces
from mesh.teach.datapath_view import clusters, listeners, nat_rules, routes
from mesh.teach.views import inline_trace

REASON = unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"pods as network namespaces: {REASON}")

G = "https://github.com/istio/istio/blob/1.19.0/"
V3 = G + "pilot/pkg/networking/core/v1alpha3/"
ZERO_PORTS = dict.fromkeys(["xds", "secure_xds", "monitoring", "webhook", "debug"], 0)
REVIEWS = "reviews.default.svc.cluster.local"
V3_CLUSTER = f"outbound|9080|v3|{REVIEWS}"


def root_links() -> list[str]:
    return sorted(link["ifname"] for link in ip_json("link"))


def root_nat() -> list[str]:
    return nat_rules(None)


def reviews_route(dump: dict) -> dict:
    """Where productpage's route "9080" sends reviews ({} before RDS arrived)."""
    for vh in routes(dump).get("9080", {}).get("virtual_hosts", []):
        if vh["name"] == f"{REVIEWS}:9080":
            return vh["routes"][0]["route"]
    return {}


def mesh_exec(demo, pod: str, *argv: str) -> str:
    """``python -m mesh exec`` in this demo's pod (``--run``: other demos may run side by side)."""
    done = subprocess.run([sys.executable, "-m", "mesh", "exec", "--run", demo.runtime.node.run, pod, "--", *argv],
                          capture_output=True,
                          text=True, timeout=30, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    return done.stdout


@contextlib.contextmanager
def netns_demo(trace: str, speed: float, until=None, what: str = ""):
    """A demo of ``trace`` in netns mode on a loop thread (``demo.runner``), stopped on exit; with
    ``until(demo)``, first wait (up to a minute) until it holds and every sidecar is synced."""
    runner = LoopThread()
    d = BookinfoDemo(DemoOptions(trace=trace, speed=speed, pods="netns", ports=dict(ZERO_PORTS)))
    d.runner = runner
    try:
        runner.run(d.start(timeout=90), timeout=120)
        deadline = time.monotonic() + 60
        while until is not None and not (until(d) and d.all_synced()):
            assert time.monotonic() < deadline, f"{what} never happened"
            time.sleep(0.2)
        yield d
    finally:
        runner.run(d.stop())
        runner.close()


@pytest.fixture(scope="module")
def demo():
    """The canary trace in netns mode, replayed to its end (reviews 0/100 from v1 to v3 at t=40)."""
    before = {"links": root_links(), "nat": root_nat()}

    def last_weights(d) -> bool:  # 0/100: istiod drops the weight-0 destination, v3's cluster alone
        return reviews_route(d.runner.run(d.pod("productpage").agent.config_dump())).get("cluster") == V3_CLUSTER

    # speed 5: the pods are created after the injector is up, so they carry istio-init; t=40 is 8s in
    with netns_demo("canary", 5, last_weights, "the canary's last VirtualService reaching productpage") as d:
        d.before = before
        yield d


def test_a_request_inside_productpage_is_captured_and_routed_by_the_weights(demo):
    productpage = demo.pod("productpage")
    reviews_v3 = next(p for p in demo.pods.values() if p.name.startswith("reviews-v3"))

    def v3_requests() -> int:
        """Requests productpage's Envoy sent to the v3 pod (``/clusters``' per-host counters: Istio's
        stats inclusion list keeps per-cluster stats out of ``/stats``)."""
        hosts = demo.runner.run(productpage.agent.admin("/clusters"))
        return sum(int(line.rsplit("::", 1)[1]) for line in hosts.splitlines()
                   if line.startswith(f"{V3_CLUSTER}::{reviews_v3.ip}:9080::rq_total::"))

    before = v3_requests()
    pods = collections.Counter()
    for _ in range(20):
        body = json.loads(mesh_exec(demo, productpage.proxy_id, "curl", "-s", "-m", "5", "http://reviews:9080/reviews/0"))
        pods[body["version"]] += 1
        assert body["app"] == "reviews" and body["calls"]["ratings"]["app"] == "ratings"  # reviews' own call, captured too
    assert pods == {"v3": 20}  # 0/100 v1/v3: every request to v3
    # The app's curl went through productpage's sidecar: its v3 cluster counted all of them.
    assert v3_requests() - before == 20


def host_requests(demo, pod, cluster: str) -> int:
    """``rq_total`` of ``cluster``'s hosts in ``pod``'s Envoy (``/clusters``)."""
    hosts = demo.runner.run(pod.agent.admin("/clusters"))
    return sum(int(line.rsplit("::", 1)[1]) for line in hosts.splitlines()
               if line.startswith(f"{cluster}::") and "::rq_total::" in line)


def test_a_pod_calling_its_own_service_goes_out_and_back_in_through_its_sidecar(demo):
    """productpage → productpage:9080 from inside productpage: captured to 15001, sent by the
    outbound cluster to the pod's own IP, and — Envoy being uid 1337 on ``lo`` — sent back into
    15006 by ``-o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT``
    (G + tools/istio-iptables/pkg/capture/run.go#L373-L378), then the inbound chain, the app. With
    uid 0 the rule before it (``-o lo ! --uid-owner 1337 -j RETURN``, #L394-L395) sent the mTLS
    connection straight to the app: a 503."""
    productpage = demo.pod("productpage")
    outbound, inbound = "outbound|9080||productpage.default.svc.cluster.local", "inbound|9080||"
    before = host_requests(demo, productpage, outbound), host_requests(demo, productpage, inbound)
    body = json.loads(mesh_exec(demo, productpage.proxy_id, "curl", "-s", "-m", "5", "http://productpage:9080/"))
    assert body["app"] == "productpage" and body["pod"] == productpage.name
    assert body["calls"]["reviews"]["app"] == "reviews"  # and its own calls went out as usual
    after = host_requests(demo, productpage, outbound), host_requests(demo, productpage, inbound)
    # one request out through the outbound cluster, the same one in through the inbound cluster
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    assert any("http://productpage:9080/" in c for c in demo.curl_commands())  # the demo prints it


def test_the_port_forward_reaches_productpage_whose_calls_are_captured(demo):
    url = demo.forward_urls()["productpage"]
    assert url.startswith("http://127.0.0.1:")
    body = json.loads(urllib.request.urlopen(url, timeout=10).read())
    assert body["app"] == "productpage" and body["calls"]["reviews"]["version"] == "v3"
    assert body["calls"]["details"]["app"] == "details"


def kube_write(demo, method: str, *args) -> None:
    """``kubectl`` into the running demo's cluster: the replay client's create/update/delete, on its loop."""
    async def write():
        getattr(demo.server.kube_client, method)(*args)
    demo.runner.run(write())


def reviews_split(v1: int, v3: int) -> dict:
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "default"},
            "spec": {"hosts": ["reviews"], "http": [{"route": [
                {"destination": {"host": "reviews", "subset": "v1"}, "weight": v1},
                {"destination": {"host": "reviews", "subset": "v3"}, "weight": v3}]}]}}


def test_a_50_50_split_under_capture_is_measured_within_four_sigma(demo):
    """The canary VirtualService at 50/50 (its t=30 step, applied again): 200 requests from inside
    productpage, captured and split by its Envoy's weighted clusters, each an independent draw
    (Envoy picks one of a route's weighted clusters for every request). v1's count is Binomial(200,
    1/2): mean 100, sigma sqrt(50) ≈ 7.07; accepting 100 ± 4 sigma (72..128) fails a correct
    split once in ~16 000 runs, while 0/100 or 100/0 (200 or 0) is far outside."""
    productpage = demo.pod("productpage")
    kube_write(demo, "update", reviews_split(50, 50))
    try:
        deadline = time.monotonic() + 60
        while [c.get("weight") for c in reviews_route(demo.runner.run(productpage.agent.config_dump()))
               .get("weighted_clusters", {}).get("clusters", [])] != [50, 50]:
            assert time.monotonic() < deadline, "the 50/50 split never reached productpage's Envoy"
            time.sleep(0.2)
        n = 200
        # one curl, 200 URLs (curl's [1-200] glob) on a kept-alive connection: each request routed anew
        out = mesh_exec(demo, productpage.proxy_id, "curl", "-s", "-m", "60", "-w", "\n",
                        f"http://reviews:9080/reviews/[1-{n}]")
        versions = collections.Counter(json.loads(line)["version"] for line in out.splitlines() if line.strip())
        assert sum(versions.values()) == n and set(versions) <= {"v1", "v3"}
        sigma = (n * 0.5 * 0.5) ** 0.5
        assert abs(versions["v1"] - n / 2) <= 4 * sigma, versions
    finally:
        kube_write(demo, "update", reviews_split(0, 100))  # the trace's last step again, for the tests after


def test_containment_while_the_demo_runs(demo):
    assert root_exposure() == []  # no 10.244/16 or 10.96/12 address or route in the root namespace
    blackholes = {r["dst"] for r in ip_json("-4", "route", "show", "type", "blackhole")}
    assert {"10.244.0.0/16", "10.96.0.0/12"} <= blackholes
    assert root_links() == demo.before["links"]  # the pods' veths live in the node namespace
    # From the root namespace a ClusterIP is unreachable at once (blackhole), not after a timeout.
    cluster_ip = mesh_exec(demo, demo.pod("productpage").proxy_id, "getent", "hosts", REVIEWS).split()[0]
    assert cluster_ip.startswith("10.96.")
    started = time.monotonic()
    with pytest.raises(OSError), socket.create_connection((cluster_ip, 9080), timeout=5):
        pass
    assert time.monotonic() - started < 1


def test_real_envoys_config_dump_shows_the_sidecar_layout(demo):
    dump = demo.runner.run(demo.pod("productpage").agent.config_dump())
    lds, cds, rds = listeners(dump), clusters(dump), routes(dump)
    # virtualOutbound: wildcard, proxyListenPort 15001, use_original_dst — V3 + listener_builder.go#L130-L137
    outbound = lds["virtualOutbound"]
    assert outbound["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 15001}
    assert outbound["use_original_dst"] is True
    # allow_any: the catch-all chain to PassthroughCluster — listener_builder.go#L217-L223, #L257-L264
    catch_all = next(c for c in outbound["filter_chains"] if c["name"] == "virtualOutbound-catchall-tcp")
    assert catch_all["filters"][0]["typed_config"]["cluster"] == "PassthroughCluster"
    # HTTP ports: one wildcard listener per port, not bound — listener.go#L626-L631, #L1211-L1213
    http = lds["0.0.0.0_9080"]
    assert http["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 9080}
    assert http["bind_to_port"] is False
    # its HCM asks RDS for the route named by the port — listener.go#L674-L676
    hcm = next(f["typed_config"] for c in http["filter_chains"] for f in c["filters"]
               if f["name"] == "envoy.filters.network.http_connection_manager")
    assert hcm["rds"]["route_config_name"] == "9080"
    # route "9080": domains without the port, ignore_port_in_host_matching — httproute.go
    vh = next(v for v in rds["9080"]["virtual_hosts"] if v["name"] == f"{REVIEWS}:9080")
    assert "reviews" in vh["domains"] and not any(d.endswith(":9080") for d in vh["domains"])
    assert rds["9080"]["ignore_port_in_host_matching"] is True
    # virtualInbound on proxyInboundListenPort 15006 — listener_inbound.go#L245-L255
    assert lds["virtualInbound"]["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 15006}
    # inbound|9080||: ORIGINAL_DST, upstream bind 127.0.0.6 — cluster_builder.go#L452-L457, #L494-L503
    inbound = cds["inbound|9080||"]
    assert inbound["type"] == "ORIGINAL_DST" and inbound["lb_policy"] == "CLUSTER_PROVIDED"
    assert inbound["upstream_bind_config"]["source_address"]["address"] == "127.0.0.6"
    # buildInboundPassthroughClusters — cluster_builder.go#L647-L663
    assert cds["InboundPassthroughClusterIpv4"]["type"] == "ORIGINAL_DST"
    assert "PassthroughCluster" in cds and cds["BlackHoleCluster"]["type"] == "STATIC"  # #L683-L692
    # the canary's subsets: EDS clusters per subset
    assert cds[V3_CLUSTER]["type"] == "EDS"


def test_envoy_runs_in_the_pod_as_the_proxy_user(demo):
    """Envoy's own traffic is not captured because it runs as uid and gid 1337 (ISTIO_OUTPUT's -m
    owner --uid-owner/--gid-owner 1337 -j RETURN), in the pod's namespace, as the injection
    template's runAsUser/runAsGroup 1337 (G + manifests/charts/istio-control/istio-discovery/files/
    injection-template.yaml#L381-L387)."""
    reviews = demo.pod("reviews")
    pid = reviews.agent.process.pid  # ip netns exec and setpriv exec() into Envoy: one process
    assert os.readlink(f"/proc/{pid}/exe").endswith("envoy")
    status = open(f"/proc/{pid}/status").read()
    uid = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    gid = next(line.split()[1:] for line in status.splitlines() if line.startswith("Gid:"))
    assert set(uid) == {"1337"} and set(gid) == {"1337"} and reviews.agent.envoy_uid == 1337
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{reviews.agent.netns}").st_ino
    assert reviews.agent.netns == reviews.app.sandbox.netns


def test_zz_nothing_is_left_after_stop(demo):
    """Stop the demo here (the fixture's stop then finds nothing to do) and look for leftovers."""
    run = demo.runtime.node.run
    envoys = [p.agent.process.pid for p in demo.pods.values()]
    demo.runner.run(demo.stop())
    assert not [n for n in netns_names() if n.startswith(run)]
    assert root_links() == demo.before["links"]
    assert root_nat() == demo.before["nat"]
    assert not state.path(run).exists()
    for pid in envoys:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read()


@pytest.fixture(scope="module")
def gateway_demo():
    """The gateways trace in netns mode: bookinfo plus the ingress gateway in its own pod, once
    bookinfo-gateway and its VirtualService (t=15) reached the gateway's Envoy."""
    def bound(d) -> bool:
        return "http.8080" in routes(d.runner.run(d.pod("istio-ingressgateway").agent.config_dump()))

    with netns_demo("gateways", 5, bound, "bookinfo-gateway reaching the ingress gateway") as d:
        yield d


def test_the_ingress_gateway_runs_in_its_pod_and_its_port_forward_reaches_productpage(gateway_demo):
    gateway = gateway_demo.pod("istio-ingressgateway")
    assert gateway.agent.pod.proxy_type == "router" and gateway.agent.netns == gateway.app.sandbox.netns
    url = gateway_demo.forward_urls()["istio-ingressgateway"]
    assert url.startswith("http://127.0.0.1:")
    # the bookinfo VirtualService bound to bookinfo-gateway sends /productpage to productpage
    body = json.loads(urllib.request.urlopen(url + "productpage", timeout=10).read())
    assert body["app"] == "productpage" and body["calls"]["reviews"]["app"] == "reviews"


def test_real_envoys_config_dump_shows_the_gateway_layout(gateway_demo):
    dump = gateway_demo.runner.run(gateway_demo.pod("istio-ingressgateway").agent.config_dump())
    lds, cds, rds = listeners(dump), clusters(dump), routes(dump)
    # one listener per server port, bound on the wildcard: no virtual listeners (nothing captured);
    # named by getListenerName — V3 + gateway.go#L287-L295
    assert list(lds) == ["0.0.0.0_8080"]
    assert lds["0.0.0.0_8080"]["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8080}
    # "Gateways do not require the default passthrough cluster" — cluster.go#L268-L269
    assert "PassthroughCluster" not in cds and "InboundPassthroughClusterIpv4" not in cds and "BlackHoleCluster" in cds
    # the route named for the server's port, ignoring the port in host matching — gateway.go#L512-L519
    assert rds["http.8080"]["ignore_port_in_host_matching"] is True
    assert "outbound|9080||productpage.default.svc.cluster.local" in cds


def plaintext_from(demo, client, server_ip: str) -> str:
    """curl from ``client``'s pod as the proxy's group (ISTIO_OUTPUT returns it uncaptured), so it
    reaches the server pod as plaintext: what a workload without a sidecar sends. "" on failure."""
    done = subprocess.run(["ip", "netns", "exec", client.app.sandbox.netns, "setpriv", "--regid=1337", "--clear-groups",
                           "curl", "-s", "-m", "5", f"http://{server_ip}:9080/"], capture_output=True, text=True)
    return done.stdout


def test_speed_zero_still_admits_the_pods_through_the_injector():
    """``--speed 0`` (the whole trace at once) still creates the pods after istiod is up: they carry
    istio-init, so a request from productpage is captured and routed by its sidecar."""
    with netns_demo("bookinfo", 0) as d:
        pods = [p for p in d.server.kube_client.list_objects("Pod") if p["metadata"].get("namespace") == "default"]
        assert pods and all(any(c["name"] == "istio-init" for c in p["spec"].get("initContainers", []))
                            for p in pods), [p["metadata"]["name"] for p in pods]
        body = json.loads(mesh_exec(d, d.pod("productpage").proxy_id, "curl", "-s", "-m", "5",
                                    "http://reviews:9080/reviews/0"))
        assert body["app"] == "reviews"


def test_mtls_permissive_then_strict_in_capture_mode():
    """The mtls trace: PERMISSIVE until its t=10 step (plaintext and mTLS accepted), then its
    mesh-wide STRICT PeerAuthentication: plaintext refused, sidecar to sidecar still answered
    (auto-mTLS with the certificates the agents got from istiod's CA). The trace is cut before
    t=10 and the test applies that step itself once PERMISSIVE has been seen, so a slow start
    cannot skip it."""
    events = [json.loads(line) for line in builtin_traces()["mtls"].read_text().splitlines()]
    (strict,) = [e["object"] for e in events[1:] if e["object"]["kind"] == "PeerAuthentication"]
    before_strict = inline_trace([events[0]] + [e for e in events[1:] if e["t"] < 10], "mtls-permissive.jsonl")
    with netns_demo(before_strict, 5) as d:
        productpage, details = d.pod("productpage"), d.pod("details")
        assert all(p.agent.workload_cert is not None for p in d.pods.values())
        assert not d.server.kube_client.list_objects("PeerAuthentication")
        assert json.loads(plaintext_from(d, productpage, details.ip))["app"] == "details"  # PERMISSIVE: plaintext accepted
        through_sidecar = json.loads(mesh_exec(d, productpage.proxy_id, "curl", "-s", "-m", "5", "http://details:9080/"))
        assert through_sidecar["app"] == "details"
        kube_write(d, "create", strict)
        deadline = time.monotonic() + 60
        # STRICT: once pushed (debounce, then details' new inbound listener), plaintext is refused
        while plaintext_from(d, productpage, details.ip) != "":
            assert time.monotonic() < deadline, "plaintext still accepted a minute after STRICT"
            time.sleep(0.5)
        assert json.loads(mesh_exec(d, productpage.proxy_id, "curl", "-s", "-m", "5", "http://details:9080/"))["app"] \
            == "details"  # mTLS between the sidecars


# -- a TCP service through tcp_proxy (the tcp-echo trace: Istio's tcp-echo and sleep samples) -------
TCP_ECHO = "tcp-echo.default.svc.cluster.local"
TCP_CLUSTER = f"outbound|9000||{TCP_ECHO}"

ECHO_CLIENT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
        s.sendall(sys.argv[3].encode() + b"\\n")
        print(s.makefile("rb").readline().decode(), end="")
except OSError as err:
    print(f"error {err}")
"""


def echo(demo, pod, host: str, line: str, port: int = 9000, *, uncaptured: bool = False) -> str:
    """One line to ``host:port`` from ``pod``'s network and the line that comes back. As root (the
    app's user) the connection is captured; ``uncaptured``: as the proxy's group, which ISTIO_OUTPUT
    returns, so it reaches the server pod as plaintext (a workload without a sidecar)."""
    user = ["setpriv", "--regid=1337", "--clear-groups"] if uncaptured else []
    done = subprocess.run(["ip", "netns", "exec", pod.app.sandbox.netns, *user, sys.executable, "-c", ECHO_CLIENT,
                           host, str(port), line], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def tcp_bytes(demo, pod) -> dict[str, int]:
    """The tcp_proxy counters (``tcp.<stat_prefix>.*_bytes_total``) in ``pod``'s Envoy's ``/stats``."""
    stats = demo.runner.run(pod.agent.admin("/stats"))
    return {name: int(value) for name, _, value in (line.partition(": ") for line in stats.splitlines())
            if name.startswith("tcp.") and name.endswith("_bytes_total")}


@pytest.fixture(scope="module")
def tcp_demo():
    """The tcp-echo trace in netns mode, once the sleep pod's Envoy has tcp-echo's TCP listener."""
    def has_listener(d) -> bool:
        return any(name.endswith("_9000") for name in listeners(d.runner.run(d.pod("sleep").agent.config_dump())))

    with netns_demo("tcp-echo", 5, has_listener, "tcp-echo's listener reaching the sleep pod") as d:
        yield d


def test_a_tcp_client_in_its_pod_reaches_the_echo_server_through_both_sidecars(tcp_demo):
    sleep, server = tcp_demo.pod("sleep"), tcp_demo.pod("tcp-echo")
    vip = mesh_exec(tcp_demo, sleep.proxy_id, "getent", "hosts", TCP_ECHO).split()[0]
    assert vip.startswith("10.96.")  # the ClusterIP, which only the sidecar's capture makes reachable
    before = tcp_bytes(tcp_demo, sleep), tcp_bytes(tcp_demo, server)
    assert echo(tcp_demo, sleep, "tcp-echo", "world") == "hello world\n"  # samples/tcp-echo/src/main.go#L82
    client, inbound = tcp_bytes(tcp_demo, sleep), tcp_bytes(tcp_demo, server)
    # The client's Envoy: the tcp_proxy whose stat prefix is the outbound cluster took the 6 bytes
    # "world\n" from the client and gave it "hello world\n" (12) — V3 + networkfilter.go#L84-L90
    sent = f"tcp.{TCP_CLUSTER}.downstream_cx_rx_bytes_total"
    received = f"tcp.{TCP_CLUSTER}.downstream_cx_tx_bytes_total"
    assert client[sent] - before[0].get(sent, 0) == 6 and client[received] - before[0].get(received, 0) == 12
    # The server's Envoy: its inbound tcp_proxy (stat prefix inbound|9000||) saw the same bytes
    assert inbound["tcp.inbound|9000||.downstream_cx_rx_bytes_total"] - before[1].get(
        "tcp.inbound|9000||.downstream_cx_rx_bytes_total", 0) == 6
    assert inbound["tcp.inbound|9000||.downstream_cx_tx_bytes_total"] - before[1].get(
        "tcp.inbound|9000||.downstream_cx_tx_bytes_total", 0) == 12


def test_the_demo_prints_a_tcp_command_that_is_echoed(tcp_demo):
    (command,) = [c for c in tcp_demo.curl_commands() if "/dev/tcp/tcp-echo/9000" in c]
    pod, _, argv = command.removeprefix("python -m mesh exec ").partition(" -- ")
    assert pod == tcp_demo.pod("sleep").proxy_id
    assert mesh_exec(tcp_demo, pod, *shlex.split(argv)) == "hello world\n"


def test_real_envoys_config_dump_shows_the_tcp_listeners(tcp_demo):
    sleep, server = tcp_demo.pod("sleep"), tcp_demo.pod("tcp-echo")
    vip = mesh_exec(tcp_demo, sleep.proxy_id, "getent", "hosts", TCP_ECHO).split()[0]
    lds = listeners(tcp_demo.runner.run(sleep.agent.config_dump()))
    # a TCP port gets a listener on the Service's address, named <vip>_<port> (listener.go#L725-L733),
    # not bound: with capture, virtualOutbound hands it the connection (listener.go#L325-L326)
    tcp = lds[f"{vip}_9000"]
    assert tcp["address"]["socket_address"] == {"address": vip, "port_value": 9000}
    assert tcp["bind_to_port"] is False
    proxy = tcp["filter_chains"][-1]["filters"][-1]
    assert proxy["name"] == "envoy.filters.network.tcp_proxy"
    assert proxy["typed_config"]["cluster"] == TCP_CLUSTER and proxy["typed_config"]["stat_prefix"] == TCP_CLUSTER
    assert f"{vip}_9001" in lds and "0.0.0.0_9000" not in lds  # tcp-other too; no wildcard HTTP listener
    # the server's virtualInbound: a chain for destination port 9000 whose tcp_proxy goes to inbound|9000||
    inbound = listeners(tcp_demo.runner.run(server.agent.config_dump()))["virtualInbound"]
    chains = [c for c in inbound["filter_chains"]
              if c.get("filter_chain_match", {}).get("destination_port") == 9000]
    assert chains and {c["filters"][-1]["typed_config"]["cluster"] for c in chains} == {"inbound|9000||"}


def test_tcp_mtls_permissive_then_strict(tcp_demo):
    """PERMISSIVE (no PeerAuthentication): the server pod takes plaintext and mTLS on 9000; a
    mesh-wide STRICT one: plaintext refused, sidecar to sidecar still echoed (auto-mTLS)."""
    sleep, server = tcp_demo.pod("sleep"), tcp_demo.pod("tcp-echo")
    assert echo(tcp_demo, sleep, server.ip, "plain", uncaptured=True) == "hello plain\n"
    strict = {"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
              "metadata": {"name": "default", "namespace": "istio-system"}, "spec": {"mtls": {"mode": "STRICT"}}}
    kube_write(tcp_demo, "create", strict)
    try:
        deadline = time.monotonic() + 60
        while echo(tcp_demo, sleep, server.ip, "plain", uncaptured=True) == "hello plain\n":
            assert time.monotonic() < deadline, "plaintext still echoed a minute after STRICT"
            time.sleep(0.5)
        assert echo(tcp_demo, sleep, "tcp-echo", "mtls") == "hello mtls\n"
    finally:
        kube_write(tcp_demo, "delete", "PeerAuthentication", "default", "istio-system")
