"""The demo with real Envoys: ``python -m mesh demo`` starts, serves traffic through the sidecars and
stops without leaving an Envoy behind; and the scale-out trace, replayed through the whole server,
reaches a sidecar by incremental EDS alone while the new pods get their own apps and sidecars."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from envoy_harness import LoopThread, get, wait_until

from mesh.demo.runner import BookinfoDemo, DemoOptions
from mesh.kube.trace import builtin_traces
from mesh.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

pytestmark = pytest.mark.envoy

ROOT = Path(__file__).resolve().parent.parent
ZERO_PORTS = ["--xds-port", "0", "--secure-xds-port", "0", "--monitoring-port", "0", "--webhook-port", "0",
              "--debug-port", "0"]


def subnet() -> str:
    """A /24 of loopback of its own, so parallel runs do not collide on pod addresses."""
    return f"127.10.{random.randint(100, 250)}"


def processes_mentioning(text: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline and "envoy" in cmdline:
                found.append(int(pid))
    return found


def test_demo_command_serves_traffic_and_stops_cleanly(tmp_path):
    net = subnet()
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "mesh", "demo", "--speed", "0", "--subnet", net,
                             "--ready-file", str(ready), *ZERO_PORTS],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), proc.communicate(timeout=30)
        info = json.loads(ready.read_text())
        sidecars = info["sidecars"]
        assert len(sidecars) == 6 and all(addr.startswith(net + ".") for addr in sidecars.values())
        assert len(processes_mentioning(f"~{net}.")) == 6  # one Envoy per pod
        productpage = next(addr for key, addr in sidecars.items() if key.startswith("productpage"))
        # The request the printed curl command sends: through productpage's sidecar.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(f"http://{productpage}/", headers={"Host": "productpage:9080"})
        with opener.open(request, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["app"] == "productpage" and body["calls"]["reviews"]["app"] == "reviews"
        assert body["calls"]["details"]["app"] == "details"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"curl -s -H 'Host: reviews:9080' http://{productpage}/" in out
    assert "python -m mesh proxy-status --debug-port" in out
    assert "stopped cleanly" in err
    assert processes_mentioning(f"~{net}.") == []  # no orphan Envoy


@pytest.fixture(scope="module")
def scale_out(tmp_path_factory):
    """The scale-out trace with bookinfo's workloads created at t=0.5 instead of t=5, so the sidecars
    are up well before reviews-v3 scales at t=10 (replayed at real speed). Not at t=0: objects
    there exist before the server starts, and the server only learns a service's endpoints from
    changes it sees (so the first change of endpoints it did not see is pushed in full)."""
    lines = builtin_traces()["scale-out"].read_text().splitlines()
    moved = [lines[0]] + [json.dumps(dict(e, t=0.5)) if e["t"] == 5.0 else json.dumps(e)
                          for e in map(json.loads, lines[1:])]
    path = tmp_path_factory.mktemp("trace") / "scale-out-early.jsonl"
    path.write_text("\n".join(moved) + "\n")
    lt = LoopThread()
    d = BookinfoDemo(DemoOptions(trace=str(path), speed=1.0, subnet=subnet(),
                                 ports=dict.fromkeys(("xds", "secure_xds", "monitoring", "webhook", "debug"), 0)))
    lt.run(d.start(), timeout=120)
    yield lt, d
    lt.run(d.stop(), timeout=60)
    lt.close()


def reviews_v3(d: BookinfoDemo, ready: bool = True) -> set[str]:
    return {k for k, p in d.pods.items() if p.app.app == "reviews" and p.app.version == "v3" and (p.ready or not ready)}


def test_a_request_through_productpage_reaches_reviews_and_ratings(scale_out):
    lt, d = scale_out
    proxy = d.pod("productpage").agent.proxy_address

    async def many(n):
        return await asyncio.gather(*(get(proxy, "productpage:9080") for _ in range(n)))

    results = lt.run(many(30))
    assert all(status == 200 for status, _, _ in results), results
    bodies = [body for _, body, _ in results]
    assert all(b["app"] == "productpage" and b["calls"]["details"]["app"] == "details" for b in bodies)
    reviews = [b["calls"]["reviews"] for b in bodies]
    assert all(r["app"] == "reviews" for r in reviews), reviews
    # v1 calls nobody; v2 and v3 call ratings through their own sidecars.
    for r in reviews:
        if r["version"] == "v1":
            assert "calls" not in r
        else:
            assert r["calls"]["ratings"]["app"] == "ratings", r
    assert len({r["version"] for r in reviews}) >= 2


def test_scale_out_reaches_the_sidecar_by_incremental_eds_alone(scale_out):
    lt, d = scale_out
    pp = d.pod("productpage")
    con = d.server.ads.connection(pp.proxy_id)
    assert len(reviews_v3(d, ready=False)) == 1, "the machine was too slow: the scale-out already happened"
    before = {t: con.sends[t] for t in (CLUSTER, ENDPOINT, LISTENER, ROUTE)}
    # t=10: reviews-v3 goes from 1 to 5 pods; each new pod gets an app and a sidecar.
    lt.run(wait_until(lambda: len(reviews_v3(d)) == 5, timeout=40, what="4 new reviews-v3 pods"), timeout=50)
    new_ips = {d.pods[k].ip for k in reviews_v3(d)}
    lt.run(wait_until(lambda: d.all_synced() and new_ips <= eds_ips(d, con), timeout=20, what="EDS with them"))
    sent = {t: con.sends[t] - n for t, n in before.items()}
    assert sent[CLUSTER] == sent[LISTENER] == sent[ROUTE] == 0 and sent[ENDPOINT] >= 1, sent
    # Envoy uses the new endpoints: the new pods answer.
    async def many():
        return await asyncio.gather(*(get(pp.agent.proxy_address, "reviews:9080") for _ in range(60)))

    results = lt.run(many())
    pods = Counter(body["pod"] for status, body, _ in results if status == 200)
    assert sum(pods.values()) == 60
    assert len(set(pods) & {d.pods[k].name for k in reviews_v3(d)}) >= 2, pods


def eds_ips(d: BookinfoDemo, con) -> set[str]:
    """The reviews endpoint addresses of the last EDS response this connection was sent, as
    istiod would generate them now (the debug view; Envoy has ACKed it when synced)."""
    from mesh.xds.debug import config_dump

    dump = config_dump(d.server.ads, con.state.proxy.id, include_eds=True)
    ips = set()
    for entry in dump["configs"][2]["dynamic_endpoint_configs"]:  # bootstrap, clusters, endpoints, ...
        cla = entry["endpoint_config"]
        if cla["cluster_name"] == "outbound|9080||reviews.default.svc.cluster.local":
            for group in cla["endpoints"]:
                ips |= {lb["endpoint"]["address"]["socket_address"]["address"] for lb in group["lb_endpoints"]}
    return ips
