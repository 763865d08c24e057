"""Pods as network namespaces (mesh.cni): containment, teardown, stale cleanup, parallel runs,
istio-init's rules applied for real (SO_ORIGINAL_DST), DNS as hosts files, port-forward, exec.

These need root and iproute2/iptables; elsewhere they are skipped with the reason."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from mesh.cni import ip as iplib
from mesh.cni import state
from mesh.cni.ip import ip, ip_json, netns_names, root_exposure
from mesh.cni.node import Node, clean_stale, find_pod
from mesh.cni.portforward import PortForward

REASON = iplib.unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"pods as network namespaces: {REASON}")

SERVICES = [
    {"metadata": {"name": "reviews", "namespace": "default"}, "spec": {"clusterIP": "10.96.0.20"}},
    {"metadata": {"name": "istiod", "namespace": "istio-system"}, "spec": {"clusterIP": "10.96.0.5"}},
    {"metadata": {"name": "headless", "namespace": "default"}, "spec": {"clusterIP": "None"}},
]
# istio-init's args as the 1.19 sidecar template writes them (tests/test_iptables.py checks the rules)
ISTIO_INIT = ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*",
              "-x", "", "-b", "*", "-d", "15090,15021,15020", "--log_output_level=default:info"]


def root_snapshot() -> dict:
    routes = [r for r in ip_json("-4", "route", "show", "table", "all") if r.get("type") != "blackhole"]
    return {"links": sorted(link["ifname"] for link in ip_json("link")),
            "addrs": sorted(str(a.get("addr_info")) for a in ip_json("addr")),
            "routes": sorted(str(r) for r in routes)}


@pytest.fixture
def node():
    n = Node().start()
    try:
        yield n
    finally:
        n.stop()


def in_pod(pod, code: str, *args: str, gid: int | None = None, timeout: float = 10) -> str:
    done = pod.run([sys.executable, "-c", textwrap.dedent(code), *args], gid=gid, capture_output=True, text=True,
                   timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


CONNECT = """
    import socket, sys, time
    t = time.monotonic()
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
        print("ok", c.recv(100).decode())
    except OSError as e:
        print("error", e.errno, round(time.monotonic() - t, 2))
"""


def test_root_namespace_gains_only_the_blackhole_routes(node):
    before = root_snapshot()
    pods = [node.add_pod("productpage-v1-a", "default", "10.244.0.5", SERVICES),
            node.add_pod("reviews-v1-b", "default", "10.244.0.6", SERVICES)]
    assert root_snapshot() == before  # no link, address or (non-blackhole) route appeared
    assert root_exposure() == []
    blackholes = {r["dst"] for r in ip_json("-4", "route", "show", "type", "blackhole")}
    assert {"10.244.0.0/16", "10.96.0.0/12"} <= blackholes
    # The node namespace: lo, the bridge and one veth per pod, each veth's peer in that pod's namespace.
    links = ip_json("-d", "link", netns=node.netns)
    assert sorted(link["ifname"] for link in links) == ["br0", "lo", "v0", "v1"]
    peers = {link["ifname"]: link.get("link_netnsid") for link in links if link["ifname"].startswith("v")}
    ids = ip("netns", "list-id", netns=node.netns)
    for nsid in peers.values():
        assert f"nsid {nsid} (iproute2 netns name: {node.run}-" in ids
    assert not [r for r in ip_json("route", netns=node.netns) if r.get("type", "unicast") == "unicast"
                and r.get("dst") == "default"]
    for pod in pods:
        assert ip_json("-4", "addr", "show", "eth0", netns=pod.netns)[0]["addr_info"][0]["local"] == pod.ip
        assert ip_json("route", "show", "default", netns=pod.netns)[0]["gateway"] == "10.244.0.1"


def test_a_connect_from_the_root_namespace_to_a_clusterip_fails_at_once(node):
    node.add_pod("reviews-v1-b", "default", "10.244.0.6", SERVICES)
    for address in ("10.96.0.20", "10.244.0.6"):
        start = time.monotonic()
        with pytest.raises(OSError):
            socket.create_connection((address, 9080), timeout=5)
        assert time.monotonic() - start < 0.5


def test_pods_reach_each_other_but_an_uncaptured_clusterip_fails_at_once(node):
    a = node.add_pod("productpage-v1-a", "default", "10.244.0.5", SERVICES)
    b = node.add_pod("reviews-v1-b", "default", "10.244.0.6", SERVICES)
    server = b.spawn([sys.executable, "-c", "import socket\ns = socket.create_server(('10.244.0.6', 9080))\n"
                      "c, _ = s.accept(); c.send(b'reviews'); c.close()"])
    try:
        time.sleep(0.3)
        assert in_pod(a, CONNECT, "10.244.0.6", "9080") == "ok reviews"
    finally:
        server.wait(5)
    result = in_pod(a, CONNECT, "10.96.0.20", "9080").split()
    assert result[0] == "error" and float(result[2]) < 0.5  # routed to the node, prohibited there
    # Cluster DNS as a hosts file: the short name only in the pod's own namespace.
    names = in_pod(a, """
        import socket
        for n in ("reviews", "reviews.default", "reviews.default.svc", "reviews.default.svc.cluster.local",
                  "istiod.istio-system.svc", "istiod", "headless"):
            try:
                print(n, socket.gethostbyname(n))
            except OSError:
                print(n, "-")
    """)
    assert names.split("\n") == ["reviews 10.96.0.20", "reviews.default 10.96.0.20", "reviews.default.svc 10.96.0.20",
                                 "reviews.default.svc.cluster.local 10.96.0.20", "istiod.istio-system.svc 10.96.0.5",
                                 "istiod -", "headless -"]


LISTEN = """
    import socket, struct, sys
    socks = []
    for port in (15001, 15006):
        s = socket.create_server(("0.0.0.0", port))
        socks.append(s)
    print("ready", flush=True)
    import select
    for _ in range(int(sys.argv[1])):
        ready, _, _ = select.select(socks, [], [], 10)
        s = ready[0]
        c, _ = s.accept()
        raw = c.getsockopt(socket.SOL_IP, 80, 16)  # SO_ORIGINAL_DST
        port, = struct.unpack("!H", raw[2:4])
        print(s.getsockname()[1], socket.inet_ntoa(raw[4:8]) + ":" + str(port), flush=True)
        c.send(b"envoy")
        c.close()
"""


def test_istio_init_rules_redirect_to_envoy_and_keep_the_original_destination(node):
    client = node.add_pod("productpage-v1-a", "default", "10.244.0.5", SERVICES)
    sidecar = node.add_pod("reviews-v1-b", "default", "10.244.0.6", SERVICES)
    sidecar.istio_init(ISTIO_INIT)
    saved = subprocess.run(["ip", "netns", "exec", sidecar.netns, "iptables-save", "-t", "nat"],
                           capture_output=True, text=True, check=True).stdout
    assert "-A ISTIO_OUTPUT -j ISTIO_REDIRECT" in saved
    assert "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006" in saved
    # A fake Envoy on 15001/15006 in reviews' pod, run with gid 1337 as Envoy is.
    envoy = sidecar.spawn([sys.executable, "-c", textwrap.dedent(LISTEN), "2"], gid=1337,
                          stdout=subprocess.PIPE, text=True)
    try:
        assert envoy.stdout.readline().strip() == "ready"
        # outbound: the app calls a ClusterIP; REDIRECT sends it to 15001, SO_ORIGINAL_DST still says where to
        assert in_pod(sidecar, CONNECT, "10.96.0.20", "9080") == "ok envoy"
        assert envoy.stdout.readline().split() == ["15001", "10.96.0.20:9080"]
        # an excluded inbound port (-d 15090,15021,15020) is not captured: refused, not sent to 15006
        assert in_pod(client, CONNECT, "10.244.0.6", "15021").split()[:2] == ["error", "111"]
        # inbound: a pod without a sidecar calls reviews' pod IP on the app port; PREROUTING sends it to 15006
        assert in_pod(client, CONNECT, "10.244.0.6", "9080") == "ok envoy"
        assert envoy.stdout.readline().split() == ["15006", "10.244.0.6:9080"]
        # Envoy's own traffic (gid 1337) is not captured: its connect to a ClusterIP goes nowhere
        assert in_pod(sidecar, CONNECT, "10.96.0.20", "9080", gid=1337).split()[:2] == ["error", "113"]
    finally:
        envoy.wait(10)
    # With istio-init in the client too, its outbound call is captured by its own (absent) Envoy.
    client.istio_init(ISTIO_INIT)
    assert in_pod(client, CONNECT, "10.244.0.6", "9080").split()[:2] == ["error", "111"]


def test_teardown_leaves_nothing_and_parallel_runs_keep_their_blackholes():
    before = root_snapshot()
    first, second = Node().start(), Node().start()
    try:
        assert first.run != second.run
        # the same pod address in both runs: each run is its own little cluster
        p1 = first.add_pod("ratings-v1-a", "default", "10.244.0.9", SERVICES)
        p2 = second.add_pod("ratings-v1-a", "default", "10.244.0.9", SERVICES)
        assert p1.netns != p2.netns and {p1.netns, p2.netns} <= set(netns_names())
        first.stop()
        assert not [n for n in netns_names() if n.startswith(first.run + "-")]
        assert not state.path(first.run).exists() and not p1.etc.exists()
        blackholes = {r["dst"] for r in ip_json("-4", "route", "show", "type", "blackhole")}
        assert {"10.244.0.0/16", "10.96.0.0/12"} <= blackholes  # the second run still needs them
        assert p2.netns in netns_names()
    finally:
        first.stop()
        second.stop()
    assert not [n for n in netns_names() if n.startswith((first.run, second.run))]
    assert root_snapshot() == before
    if not any(state.is_live(r, s) for r, s in state.runs().items()) and not PREEXISTING_BLACKHOLES:
        assert not ip_json("-4", "route", "show", "type", "blackhole")  # the last run took them away


PREEXISTING_BLACKHOLES = bool(ip_json("-4", "route", "show", "type", "blackhole")) if REASON is None else False

KILLED_RUN = """
import os
from mesh.cni.node import Node
n = Node().start()
pod = n.add_pod("details-v1-a", "default", "10.244.0.7")
print(n.run, pod.netns, flush=True)
os._exit(9)  # as if killed: no stop()
"""


def test_a_killed_runs_leftovers_are_removed_at_the_next_start_and_live_runs_are_not(node):
    mine = node.add_pod("productpage-v1-a", "default", "10.244.0.5")
    done = subprocess.run([sys.executable, "-c", KILLED_RUN], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, check=False)
    run, leftover = done.stdout.split()
    assert leftover in netns_names() and state.path(run).exists()
    removed = clean_stale()
    assert f"{run}-node" in removed and leftover in removed
    assert leftover not in netns_names() and not state.path(run).exists()
    assert mine.netns in netns_names() and state.path(node.run).exists()  # the live run is untouched


def test_port_forward_reaches_an_app_in_its_pod_through_a_unix_socket(node, tmp_path):
    pod = node.add_pod("productpage-v1-a", "default", "10.244.0.5", SERVICES)
    app = pod.spawn([sys.executable, "-c", "import http.server as h\nclass H(h.BaseHTTPRequestHandler):\n"
                     " def do_GET(self):\n  self.send_response(200); self.end_headers(); self.wfile.write(b'productpage')\n"
                     " def log_message(self, *a): pass\nh.HTTPServer(('10.244.0.5', 9080), H).serve_forever()"])

    async def fetch() -> bytes:
        forward = await PortForward(pod, 9080, tmp_path / "pf.sock").start()
        try:
            for _ in range(50):
                reader, writer = await asyncio.open_connection("127.0.0.1", forward.local_port)
                writer.write(b"GET / HTTP/1.0\r\n\r\n")
                body = await reader.read()
                writer.close()
                if body:
                    return body
                await asyncio.sleep(0.1)  # the app is still starting
            return b""
        finally:
            await forward.stop()

    try:
        assert asyncio.run(fetch()).endswith(b"productpage")
    finally:
        app.terminate()
        app.wait(5)


def test_find_pod_by_name_prefix_and_namespace(node):
    # Names no demo uses: a demo running beside the tests must not make a prefix ambiguous.
    node.add_pod("cnifind-v1-abc12", "default", "10.244.0.5")
    node.add_pod("cnigw-x", "istio-system", "10.244.0.3")
    assert find_pod("cnifind")[0] == node.netns_for("cnifind-v1-abc12", "default")
    assert find_pod("cnifind-v1-abc12.default")[1]["ip"] == "10.244.0.5"
    assert find_pod("cnigw.istio-system")[1]["ip"] == "10.244.0.3"
    with pytest.raises(LookupError, match="no running pod cnimissing"):
        find_pod("cnimissing")
    with pytest.raises(ValueError, match="not a pod address"):
        node.add_pod("bad", "default", "10.96.0.9")


def test_mesh_exec_runs_a_command_in_the_pod(node):
    node.add_pod("cniexec-v1-abc12", "default", "10.244.0.5", SERVICES)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "mesh", "exec", "cniexec", "--", "ip", "-4", "-br", "addr",
                           "show", "eth0"], capture_output=True, text=True, env=env, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert "10.244.0.5/16" in done.stdout
    done = subprocess.run([sys.executable, "-m", "mesh", "exec", "nosuchpod", "--", "true"], capture_output=True,
                          text=True, env=env, timeout=30, check=False)
    assert done.returncode == 2 and "no running pod nosuchpod" in done.stderr


def test_mesh_iptables_applies_istio_init_in_a_running_pod(node):
    pod = node.add_pod("cniratings-v1-abc12", "default", "10.244.0.9")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "mesh", "iptables", "--pod", "cniratings", "--", *ISTIO_INIT],
                          capture_output=True, text=True, env=env, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    saved = subprocess.run(["ip", "netns", "exec", pod.netns, "iptables-save", "-t", "nat"],
                           capture_output=True, text=True, check=True).stdout
    assert "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in saved
    root = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=False).stdout
    assert "ISTIO_" not in root  # nothing in the root namespace


def test_mesh_port_forward_reaches_a_pod_port_from_loopback(node):
    pod = node.add_pod("cnidetails-v1-abc12", "default", "10.244.0.7")
    app = pod.spawn([sys.executable, "-c", "import socket\ns = socket.create_server(('10.244.0.7', 9080))\n"
                     "while True:\n c, _ = s.accept(); c.send(b'details'); c.close()"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    forward = subprocess.Popen([sys.executable, "-m", "mesh", "port-forward", "cnidetails", "9080"], env=env,
                               stdout=subprocess.PIPE, text=True)
    try:
        line = forward.stdout.readline()
        assert line.startswith("Forwarding from 127.0.0.1:") and "-> 10.244.0.7:9080 in pod cnidetails-v1-abc12.default" in line
        port = int(line.split(":")[1].split()[0])
        for _ in range(50):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                data = c.recv(100)
            if data:
                break
            time.sleep(0.1)
        assert data == b"details"
    finally:
        forward.terminate()
        assert forward.wait(10) == 0
        app.terminate()
        app.wait(5)
