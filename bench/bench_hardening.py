"""Hardening figures: many Services arriving at once, a stalled event loop, stuck and flooding ADS clients.

Run ``.venv/bin/python bench/bench_hardening.py [--services N] [--stuck N]``. Prints:

1. **arrival** — ``mesh serve`` on a trace where N Services (default 3000) arrive at once at
   t=2 s: time until ready, the longest a ``/ready`` request waited while they arrived (the event
   loop's longest stall, seen from outside), when the last push context covered them, and how long
   SIGTERM took. Also ``mesh replay`` of the same trace. (istiod converts Gateway API once per
   PushContext; mesh did it once per Service event, so this used to grow with N².)
2. **stuck streams** — N ADS streams (default 200) that never open their HTTP/2 window, a push
   that stalls on all of them, then a new proxy: how long until it has its clusters, and how long
   a healthy proxy waits for that push.
3. **flood** — a client sending 40 MB of DiscoveryRequests without reading: bytes accepted
   before it was cut off, and the server's RSS growth.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from stuckads import RawAdsStream, discovery_request, flood, stuck_client  # noqa: E402
from test_xds_ads import Client, make_server  # noqa: E402
from xds_fakes import endpoint  # noqa: E402

from mesh.model.push_request import PushRequest, TriggerReason  # noqa: E402
from mesh.xds.types import CLUSTER  # noqa: E402

# The stuck-stream figures are about streams that never read, not istiod's new-stream admission:
# its limit (PILOT_MAX_REQUESTS_PER_SECOND, 25 a second, mesh/xds/ratelimit.py) would refuse most
# of 200 streams opened at once. 0 turns it off, as istiod allows; set it to measure with the limit.
os.environ.setdefault("PILOT_MAX_REQUESTS_PER_SECOND", "0")

ROOT = Path(__file__).resolve().parent.parent


def many_services_trace(path: Path, n: int, at: float) -> None:
    lines = [{"trace": "mesh/v1", "name": "many", "domain_suffix": "cluster.local"},
             {"t": 0, "type": "ADDED", "object": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "many"}}}]
    lines += [{"t": at, "type": "ADDED", "object": {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}", "namespace": "many"},
        "spec": {"clusterIP": f"10.96.{i // 250}.{i % 250 + 1}", "ports": [{"name": "http", "port": 80}]}}}
        for i in range(n)]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def ready_latency(port: int) -> float:
    t0 = time.perf_counter()
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=120).read()
    except OSError:
        pass
    return time.perf_counter() - t0


def arrival(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        trace, ready = Path(tmp) / "many.jsonl", Path(tmp) / "ready.json"
        at = 2.0
        many_services_trace(trace, n, at)
        ports = [a for p in ("debug", "xds", "secure-xds", "monitoring", "webhook") for a in (f"--{p}-port", "0")]
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "mesh", "serve", "--trace", str(trace), "--speed", "1",
                                 "--ready-file", str(ready), *ports], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env={**os.environ})
        try:
            while not ready.exists():
                time.sleep(0.05)
            started = time.perf_counter() - t0
            debug = json.loads(ready.read_text())["debug"]
            worst, polls = 0.0, 0
            end = time.perf_counter() + at + 4
            while time.perf_counter() < end:  # through the arrival and after it
                worst = max(worst, ready_latency(debug))
                polls += 1
                time.sleep(0.02)
            with urllib.request.urlopen(f"http://127.0.0.1:{debug}/debug/registryz", timeout=60) as resp:
                known = sum(1 for s in json.loads(resp.read()) if ".many.svc." in json.dumps(s))
            t1 = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
            term = time.perf_counter() - t1
        finally:
            if proc.poll() is None:
                proc.kill()
        print(f"arrival: {n} Services at once: serve ready in {started:.1f} s; longest /ready wait while they "
              f"arrived {worst * 1000:.0f} ms ({polls} polls); {known} in the registry after; SIGTERM → exit {term:.2f} s")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mesh", "replay", str(trace)], cwd=ROOT,
                       stdout=subprocess.DEVNULL, check=True)
        print(f"arrival: mesh replay of the same trace: {time.perf_counter() - t0:.1f} s")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


async def stuck_and_flood(n: int) -> None:
    reg, _, _, ads = make_server()
    for i in range(300):
        reg.add_service(f"svc-{i}")
        reg.set_endpoints(f"svc-{i}.default.svc.cluster.local", 9080, [endpoint(f"127.10.1.{i % 250 + 1}")])
    port = await ads.start()
    stuck = [await stuck_client("127.0.0.1", port, CLUSTER, i) for i in range(n)]
    healthy = Client(port)
    try:
        while len(ads.connections) < n:
            await asyncio.sleep(0.05)
        healthy.send(CLUSTER)
        first = await healthy.recv()
        healthy.send(CLUSTER, nonce=first.nonce, version=first.version_info)
        await asyncio.sleep(0.3)
        ads.push(PushRequest.of(TriggerReason.CONFIG))
        t0 = time.perf_counter()
        await healthy.recv(timeout=30)
        push_wait = time.perf_counter() - t0
        newcomers = []
        for _ in range(5):
            c = Client(port)
            t0 = time.perf_counter()
            c.send(CLUSTER)
            await c.recv(timeout=30)
            newcomers.append(time.perf_counter() - t0)
            await c.close()
        print(f"stuck streams: {n} stalled, a push to a healthy proxy arrived in {push_wait * 1000:.0f} ms; "
              f"a new proxy's clusters in {min(newcomers) * 1000:.0f}-{max(newcomers) * 1000:.0f} ms (5 tries)")
    finally:
        await healthy.close()
        for s in stuck:
            await s.close()
    start = _rss_mb()
    stream = RawAdsStream(window=0)
    await stream.open("127.0.0.1", port, discovery_request(
        CLUSTER, "sidecar~127.10.9.1~flood.default~default.svc.cluster.local"))
    sent = await flood(stream, discovery_request(CLUSTER), 40 << 20)
    while ads.connections:
        await asyncio.sleep(0.05)
    print(f"flood: 40 MB offered, {sent / 1e6:.1f} MB accepted before the stream was cut "
          f"({dict(ads.closed_by_server)}); RSS +{_rss_mb() - start:.0f} MB (server and client in one process)")
    await stream.close()
    await ads.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--services", type=int, default=3000)
    p.add_argument("--stuck", type=int, default=200)
    args = p.parse_args()
    arrival(args.services)
    asyncio.run(stuck_and_flood(args.stuck))


if __name__ == "__main__":
    main()
