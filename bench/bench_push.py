"""Push benchmarks: serialization cost, push → ACK latency with a real Envoy, and scale.

istiod's own figures are ``pilot_proxy_convergence_time`` and ``pilot_xds_push_time``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/monitoring.go). Run
``.venv/bin/python bench/bench_push.py [--services N] [--clients N] [--skip-envoy] [--skip-scale]``.

1. **serialization** — for a mesh of N services: building a cluster dict vs serializing it
   (betterproto2) vs finding it in the XdsCache.
2. **latency** — one real Envoy: a full push (debounce bypassed) until Envoy has ACKed every
   type; median and p90 over repeated VirtualService edits. The debounce floor (100 ms) comes
   on top of this in ``serve``.
3. **scale** — N services with 3 endpoints each and C simulated ADS clients in another process
   (one gRPC connection each, subscribed to CDS and EDS, ACKing every response): a cold connect
   storm, a full push and an incremental EDS push; each measured until every client has ACKed,
   plus the server's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from xds_fakes import FakeConfigStore, FakeRegistry, endpoint  # noqa: E402

from mesh.clock import RealClock  # noqa: E402
from mesh.model.push_request import ConfigKey, PushRequest, TriggerReason  # noqa: E402
from mesh.networking.cluster import build_outbound_clusters  # noqa: E402
from mesh.networking.push_context import PushContext  # noqa: E402
from mesh.xds.ads import ADS_METHOD, AdsServer  # noqa: E402
from mesh.xds.cache import XdsCache  # noqa: E402
from mesh.xds.discovery import DiscoveryServer  # noqa: E402
from mesh.xds.resources import CLUSTER, ENDPOINT, to_bytes  # noqa: E402

NS = "bench"


def make_mesh(n_services: int) -> tuple[FakeRegistry, FakeConfigStore]:
    reg, store = FakeRegistry(), FakeConfigStore()
    for i in range(n_services):
        svc = reg.add_service(f"svc-{i}", namespace=NS)
        reg.set_endpoints(svc.hostname, 9080, [endpoint(f"127.11.{i // 250}.{(i % 250) * 1 + j}", app=f"svc-{i}")
                                               for j in range(3)])
    return reg, store


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


# -- 1. serialization -------------------------------------------------------------------------
def bench_serialization(n: int) -> None:
    reg, store = make_mesh(n)
    push = PushContext.build(reg, store)
    t0 = time.perf_counter()
    clusters = [c for s in push.services for c in build_outbound_clusters(push, s)]
    build = (time.perf_counter() - t0) / len(clusters)
    t0 = time.perf_counter()
    for c in clusters:
        to_bytes(CLUSTER, c)
    ser = (time.perf_counter() - t0) / len(clusters)
    cache = XdsCache()
    for c in clusters:
        cache.serialize(CLUSTER, c)
    t0 = time.perf_counter()
    for c in clusters:
        cache.serialize(CLUSTER, c)
    hit = (time.perf_counter() - t0) / len(clusters)
    print(f"serialization, {len(clusters)} clusters: build {build * 1e6:.0f} µs, serialize {ser * 1e6:.0f} µs "
          f"({ser / build:.0f}x the build), cache hit {hit * 1e6:.0f} µs per resource")


# -- 2. latency with a real Envoy ---------------------------------------------------------------
async def bench_latency(rounds: int) -> None:
    from mesh.agent.agent import EnvoyAgent
    from mesh.agent.bootstrap import PodIdentity

    reg, store = make_mesh(20)
    discovery = DiscoveryServer(RealClock())
    ads = AdsServer(discovery, None, reg, store)
    port = await ads.start()
    agent = EnvoyAgent(PodIdentity("client", NS, "127.11.200.1", {"app": "client"}), "127.0.0.1", port)
    await agent.start()
    try:
        await agent.wait_ready()
        done: dict[str, asyncio.Event] = {}

        def on_ack(con, type_url, version, nonce):
            if version == ads.push_context.version and all(
                    w.version_acked == version for w in con.watched.values()):
                done.setdefault(version, asyncio.Event()).set()

        ads.ack_listeners.append(on_ack)
        times = []
        for i in range(rounds):
            store.apply("VirtualService", "svc-0", NS, {"hosts": ["svc-0"], "http": [{"route": [
                {"destination": {"host": "svc-0"}}], "timeout": f"{i + 1}s"}]})
            t0 = time.perf_counter()
            ads.push(PushRequest.of(TriggerReason.CONFIG, configs={ConfigKey("VirtualService", "svc-0", NS)}))
            event = done.setdefault(ads.push_context.version, asyncio.Event())
            await asyncio.wait_for(event.wait(), 10)
            times.append(time.perf_counter() - t0)
        print(f"push → ACK (CDS, EDS, LDS, RDS) with one real Envoy, {rounds} pushes: "
              f"median {ms(statistics.median(times))}, p90 {ms(pct(times, 0.9))} (target: median ≤ 10 ms)")
    finally:
        await agent.stop()
        agent.cleanup()
        await ads.stop()


# -- 3. scale ---------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def bench_scale(n_services: int, n_clients: int, processes: int = 1) -> None:
    reg, store = make_mesh(n_services)
    discovery = DiscoveryServer(RealClock())
    ads = AdsServer(discovery, None, reg, store)
    port = await ads.start()
    acks: dict[tuple[str, str], dict[int, float]] = {}

    def on_ack(con, type_url, version, nonce):
        acks.setdefault((type_url, version), {}).setdefault(con.number, time.perf_counter())

    ads.ack_listeners.append(on_ack)

    async def converge(type_url: str, version: str, t0: float, timeout: float = 60) -> list[float]:
        deadline = time.perf_counter() + timeout
        while len(acks.get((type_url, version), {})) < n_clients:
            if time.perf_counter() > deadline:
                got = len(acks.get((type_url, version), {}))
                raise TimeoutError(f"{got}/{n_clients} clients ACKed {type_url} version {version}")
            await asyncio.sleep(0.01)
        return [t - t0 for t in acks[(type_url, version)].values()]

    per = -(-n_clients // processes)  # clients per process, rounded up
    clients = [subprocess.Popen([sys.executable, __file__, "--client-process", str(port), str(min(per, n_clients - k * per)),
                                 str(n_services), str(k * per)], stdin=subprocess.PIPE, text=True)
               for k in range(processes)]
    try:
        t0 = time.perf_counter()
        for client in clients:
            client.stdin.write("go\n")
            client.stdin.flush()
        version = ads.push_context.version
        storm = await converge(ENDPOINT, version, t0, timeout=120)
        print(f"scale: {n_services} services × 3 endpoints, {n_clients} ADS clients (CDS+EDS) "
              f"in {processes} client process(es)")
        print(f"  cold connect storm, all ACKed: {max(storm):.2f} s (target ≤ 10 s)")
        t0 = time.perf_counter()
        store.apply("VirtualService", "svc-0", NS, {"hosts": ["svc-0"], "http": [{"route": [
            {"destination": {"host": "svc-0"}}]}]})
        ads.push(PushRequest.of(TriggerReason.CONFIG, configs={ConfigKey("VirtualService", "svc-0", NS)}))
        version = ads.push_context.version
        full = await converge(ENDPOINT, version, t0)
        print(f"  full push convergence: p50 {statistics.median(full):.2f} s, p99 {pct(full, 0.99):.2f} s "
              f"(target p99 ≤ 2 s)")
        acks.pop((ENDPOINT, version), None)  # an incremental EDS push keeps the version: count anew
        t0 = time.perf_counter()
        host = f"svc-1.{NS}.svc.cluster.local"
        reg.set_endpoints(host, 9080, [endpoint(f"127.12.0.{j}", app="svc-1") for j in range(1, 5)])
        ads.push(PushRequest.of(TriggerReason.ENDPOINT, full=False, configs={ConfigKey("ServiceEntry", host, NS)}))
        inc = await converge(ENDPOINT, version, t0)  # incremental EDS keeps the push version
        print(f"  incremental EDS of one service: p50 {statistics.median(inc):.2f} s, p99 {pct(inc, 0.99):.2f} s "
              f"(target p99 ≤ 1 s)")
        print(f"  server peak RSS: {peak_rss_mb():.0f} MB (target ≤ 512 MB)")
    finally:
        for client in clients:
            client.stdin.close()
        for client in clients:
            try:
                client.wait(10)
            except subprocess.TimeoutExpired:
                client.kill()
        await ads.stop(grace=0)


# -- the simulated clients (a separate process) ------------------------------------------------------
def client_process(port: int, n_clients: int, n_services: int, first: int = 0) -> None:
    import grpc
    from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest

    from mesh.xds.fastpath import _field, _read_varint

    def scan(data: bytes) -> tuple[str, str, str]:
        """version, type_url, nonce of a DiscoveryResponse, skipping the resources without copying."""
        view, pos, found = memoryview(data), 0, {}
        while pos < len(data):
            tag, pos = _read_varint(data, pos)
            length, pos = _read_varint(data, pos)
            if tag >> 3 in (1, 4, 5):
                found[tag >> 3] = bytes(view[pos:pos + length]).decode()
            pos += length
        return found.get(1, ""), found.get(4, ""), found.get(5, "")

    eds_names = [f"outbound|9080||svc-{i}.{NS}.svc.cluster.local" for i in range(n_services)]
    names_bytes = b"".join(_field(3, n.encode()) for n in eds_names)

    def request(type_url: str, version: str, nonce: str, names: bytes = b"") -> bytes:
        return (_field(1, version.encode()) if version else b"") + names + _field(4, type_url.encode()) + \
            (_field(5, nonce.encode()) if nonce else b"")

    async def one(i: int, go: asyncio.Event):
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        outbox: asyncio.Queue = asyncio.Queue()
        node = {"id": f"sidecar~127.13.{i // 250}.{i % 250 + 1}~client-{i}.{NS}~{NS}.svc.cluster.local",
                "cluster": f"client.{NS}"}
        outbox.put_nowait(bytes(DiscoveryRequest.from_dict({"node": node, "typeUrl": CLUSTER})))

        async def requests():
            while (msg := await outbox.get()) is not None:
                yield msg
        call = channel.stream_stream(ADS_METHOD)(requests())
        subscribed = False
        try:
            while True:
                data = await call.read()
                if data is grpc.aio.EOF:
                    break
                version, type_url, nonce = scan(data)
                if type_url == CLUSTER:
                    outbox.put_nowait(request(CLUSTER, version, nonce))
                    if not subscribed:
                        outbox.put_nowait(request(ENDPOINT, "", "", names_bytes))
                        subscribed = True
                else:
                    outbox.put_nowait(request(type_url, version, nonce, names_bytes))
        except asyncio.CancelledError:
            pass
        except grpc.aio.AioRpcError as err:
            failures[err.code().name] += 1
        finally:
            outbox.put_nowait(None)
            await channel.close()

    failures: Counter = Counter()

    async def main():
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)  # "go"
        tasks = [asyncio.create_task(one(i, None)) for i in range(first, first + n_clients)]
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
        if failures:
            print(f"  client streams failed: {dict(failures)}", file=sys.stderr)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client-process":
        client_process(*(int(a) for a in sys.argv[2:6]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--clients", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--client-processes", type=int, default=1, help="spread the simulated clients over N processes")
    p.add_argument("--skip-envoy", action="store_true")
    p.add_argument("--skip-scale", action="store_true")
    args = p.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    bench_serialization(args.services)
    if not args.skip_envoy:
        asyncio.run(bench_latency(args.rounds))
    if not args.skip_scale:
        asyncio.run(bench_scale(args.services, args.clients, args.client_processes))


if __name__ == "__main__":
    main()
