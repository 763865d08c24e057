"""Push benchmarks: serialization cost, push → ACK latency with a real Envoy, and scale.

istiod's own figures are ``pilot_proxy_convergence_time`` and ``pilot_xds_push_time``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/monitoring.go). Run
``.venv/bin/python bench/bench_push.py [--services N] [--clients N] [--scale-rounds N] [--skip-envoy] [--skip-scale] [--delta]``.

1. **serialization** — for a mesh of N services: building a cluster dict vs serializing it
   (betterproto2) vs finding it in the XdsCache.
2. **latency** — one real Envoy: a full push (debounce bypassed) until Envoy has ACKed every
   type; median and p90 over repeated VirtualService edits. The debounce floor (100 ms) comes
   on top of this in ``serve``.
3. **scale** — N services with 3 endpoints each and C simulated ADS clients in other processes
   (one gRPC connection each, subscribed to CDS and EDS, ACKing every response): a cold connect
   storm, then rounds of a full push (a VirtualService edit: CDS, no EDS, as in istiod) and an
   incremental EDS push, then full pushes that carry EDS too (a DestinationRule edit), each
   measured from the change until every client has ACKed; the server's peak RSS. Each line
   also says where the CPU went — the server, the simulated clients, everything else on the
   machine — because server and clients share its cores: on a small machine the clients
   (Python gRPC receiving a gigabyte per full push) cost as much as the server.
4. **delta** (``--delta``) — the same scale run again with the clients speaking Delta xDS
   (``DeltaAggregatedResources``: wildcard CDS, EDS subscribed by name, ACKs carrying only the
   nonce): the connect storm, incremental EDS of one service and a DestinationRule edit (over Delta
   only the changed cluster goes out; unchanged endpoints are not re-sent), and the bytes sent per
   EDS update per proxy over both protocols in the same run (``mesh_xds_sent_bytes``).
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
from mesh.xds.ads import ADS_METHOD, ADS_SERVICE, AdsServer  # noqa: E402
from mesh.xds.cache import XdsCache  # noqa: E402
from mesh.xds.discovery import DiscoveryServer  # noqa: E402
from mesh.xds.resources import to_bytes  # noqa: E402
from mesh.xds.types import CLUSTER, ENDPOINT, short_name

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
            # the push reached this proxy and it ACKed every response sent (no EDS for a VirtualService)
            if con.push_version == ads.push_context.version and con.synced():
                done.setdefault(con.push_version, asyncio.Event()).set()

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
        print(f"push → ACK (CDS, LDS, RDS for a VirtualService edit) with one real Envoy, {rounds} pushes: "
              f"median {ms(statistics.median(times))}, p90 {ms(pct(times, 0.9))} (target: median ≤ 10 ms)")
    finally:
        await agent.stop()
        agent.cleanup()
        await ads.stop()


# -- 3. scale ---------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def own_cpu() -> float:
    """CPU seconds of this process (the server: event loop and gRPC's threads), user + system."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pid_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / tick, sum(values) / tick


class Phase:
    """Wall time, server CPU, simulated clients' CPU and everyone else's CPU over one measurement."""

    def __init__(self, clients: list[subprocess.Popen]):
        self.clients = clients
        self.t0 = time.perf_counter()
        self.cpu0, self.clients0, self.busy0 = own_cpu(), self._clients_cpu(), machine_busy()

    def _clients_cpu(self) -> float:
        return sum(pid_cpu(c.pid) for c in self.clients)

    def end(self) -> dict[str, float]:
        busy, total = machine_busy()
        server, clients = own_cpu() - self.cpu0, self._clients_cpu() - self.clients0
        wall = time.perf_counter() - self.t0
        cores = (total - self.busy0[1]) / wall
        return {"wall": wall, "server": server, "clients": clients,
                "others": max(0.0, busy - self.busy0[0] - server - clients), "cores": cores,
                "load": float(Path("/proc/loadavg").read_text().split()[0])}


def cpu_note(phase: dict[str, float], last_send: float | None = None) -> str:
    sent = f"last response handed to gRPC at {last_send:.2f} s; " if last_send is not None else ""
    return (f"{sent}CPU over {phase['wall']:.2f} s: server {phase['server']:.2f} s, clients {phase['clients']:.2f} s, "
            f"other processes {phase['others']:.2f} s ({phase['cores']:.0f} cores, load {phase['load']:.1f})")


async def bench_scale(n_services: int, n_clients: int, processes: int = 2, rounds: int = 3,
                      protocol: str = "sotw") -> dict[str, float]:
    """The scale run over ``protocol`` ("sotw" or "delta"); returns bytes sent per proxy per EDS update."""
    reg, store = make_mesh(n_services)
    discovery = DiscoveryServer(RealClock())
    ads = AdsServer(discovery, None, reg, store)
    port = await ads.start()
    acks: dict[tuple[str, str], dict[int, float]] = {}

    def on_ack(con, type_url, version, nonce):
        acks.setdefault((type_url, version), {}).setdefault(con.number, time.perf_counter())

    ads.ack_listeners.append(on_ack)

    async def converge(types: tuple[str, ...], version: str, t0: float, timeout: float = 120) -> list[float]:
        """Per client, the time until it had ACKed ``version`` of every type in ``types``."""
        deadline = time.perf_counter() + timeout
        while any(len(acks.get((t, version), {})) < n_clients for t in types):
            if time.perf_counter() > deadline:
                got = {short_name(t): len(acks.get((t, version), {})) for t in types}
                raise TimeoutError(f"of {n_clients} clients, ACKed version {version}: {got}")
            await asyncio.sleep(0.01)
        return [max(acks[(t, version)][n] for t in types) - t0 for n in acks[(types[0], version)]]

    def last_send(version: str, t0: float) -> float:
        """When the server handed its last response of ``version`` to gRPC (Connection events)."""
        return max((e.at for con in list(ads.connections.values()) for e in con.events
                    if e.kind == "send" and e.version == version), default=t0) - t0

    def summary(name: str, p99s: list[float], target: float) -> str:
        return (f"  {name}: p99 median {statistics.median(p99s):.2f} s, worst {max(p99s):.2f} s over {len(p99s)} "
                f"round(s) (target p99 ≤ {target:g} s)")

    async def full_vs_round(rnd: int) -> float:
        """Over SotW: a VirtualService edit, a full push of CDS (no EDS, as in istiod); its p99.
        (Over Delta the clusters do not change, so nothing would be sent to converge on.)"""
        phase = Phase(clients)
        store.apply("VirtualService", "svc-0", NS, {"hosts": ["svc-0"], "http": [{"route": [
            {"destination": {"host": "svc-0"}}], "timeout": f"{rnd + 1}s"}]})
        ads.push(PushRequest.of(TriggerReason.CONFIG, configs={ConfigKey("VirtualService", "svc-0", NS)}))
        version = ads.push_context.version
        full = await converge((CLUSTER,), version, phase.t0)
        print(f"  round {rnd + 1} full push (VirtualService edit: CDS, no EDS): p50 {statistics.median(full):.2f} s, "
              f"p99 {pct(full, 0.99):.2f} s; {cpu_note(phase.end(), last_send(version, phase.t0))}")
        return pct(full, 0.99)

    per = -(-n_clients // processes)  # clients per process, rounded up
    clients = [subprocess.Popen([sys.executable, __file__, "--client-process", str(port), str(min(per, n_clients - k * per)),
                                 str(n_services), str(k * per), "1" if protocol == "delta" else "0"],
                                stdin=subprocess.PIPE, text=True)
               for k in range(processes)]

    def sent_bytes(short: str) -> float:
        return ads.metrics.registry.get_sample_value("mesh_xds_sent_bytes_total",
                                                     {"type": short, "protocol": protocol}) or 0.0
    eds_bytes: list[float] = []
    try:
        await asyncio.sleep(1.0)  # let the client processes import before the storm starts
        phase = Phase(clients)
        for client in clients:
            client.stdin.write("go\n")
            client.stdin.flush()
        version = ads.push_context.version
        storm = await converge((CLUSTER, ENDPOINT), version, phase.t0, timeout=120)
        print(f"scale ({protocol}): {n_services} services × 3 endpoints, {n_clients} ADS clients (CDS+EDS) "
              f"in {processes} client process(es), {os.cpu_count()} cores shared by server and clients")
        print(f"  cold connect storm, all ACKed: {max(storm):.2f} s (target ≤ 10 s); "
              f"{cpu_note(phase.end(), last_send(version, phase.t0))}")
        full_p99, eds_p99, inc_p99 = [], [], []
        for rnd in range(rounds):
            await asyncio.sleep(0.5)
            if protocol == "sotw":
                full_p99.append(await full_vs_round(rnd))
                await asyncio.sleep(0.5)
            version = ads.push_context.version
            for t in (CLUSTER, ENDPOINT):  # an incremental EDS push keeps the version: count anew
                acks.pop((t, version), None)
            phase = Phase(clients)
            before = sent_bytes("eds")
            host = f"svc-1.{NS}.svc.cluster.local"
            reg.set_endpoints(host, 9080, [endpoint(f"127.12.0.{j}", app="svc-1") for j in range(1, 5 + rnd)])
            ads.push(PushRequest.of(TriggerReason.ENDPOINT, full=False, configs={ConfigKey("ServiceEntry", host, NS)}))
            inc = await converge((ENDPOINT,), version, phase.t0)
            inc_p99.append(pct(inc, 0.99))
            eds_bytes.append((sent_bytes("eds") - before) / n_clients)
            print(f"  round {rnd + 1} incremental EDS of one service: p50 {statistics.median(inc):.2f} s, "
                  f"p99 {inc_p99[-1]:.2f} s, {eds_bytes[-1]:.0f} bytes per proxy; {cpu_note(phase.end())}")
        # A change EDS does depend on (a DestinationRule: subsets and load balancing) sends CDS and EDS,
        # every ClusterLoadAssignment to every client — twice the bytes of the push above. Over
        # Delta only the changed cluster is sent, and the unchanged assignments not at all.
        types = (CLUSTER, ENDPOINT) if protocol == "sotw" else (CLUSTER,)
        for rnd in range(rounds):
            await asyncio.sleep(0.5)
            phase = Phase(clients)
            before = sent_bytes("cds") + sent_bytes("eds")
            store.apply("DestinationRule", "svc-0", NS, {"host": "svc-0", "trafficPolicy": {
                "connectionPool": {"tcp": {"maxConnections": 100 + rnd}}}})
            ads.push(PushRequest.of(TriggerReason.CONFIG, configs={ConfigKey("DestinationRule", "svc-0", NS)}))
            version = ads.push_context.version
            both = await converge(types, version, phase.t0)
            eds_p99.append(pct(both, 0.99))
            per_proxy = (sent_bytes("cds") + sent_bytes("eds") - before) / n_clients
            print(f"  round {rnd + 1} full push (DestinationRule edit: {'+'.join(short_name(t) for t in types)}): "
                  f"p50 {statistics.median(both):.2f} s, p99 {eds_p99[-1]:.2f} s, {per_proxy:.0f} bytes per proxy; "
                  f"{cpu_note(phase.end(), last_send(version, phase.t0))}")
        if full_p99:
            print(summary("full push after a config change (VirtualService: CDS)", full_p99, 2))
        print(summary(f"full push after a DestinationRule edit ({'+'.join(short_name(t) for t in types)})", eds_p99, 2))
        print(summary("incremental EDS", inc_p99, 0.3 if protocol == "delta" else 1))
        print(f"  server peak RSS: {peak_rss_mb():.0f} MB (target ≤ 512 MB)")
        return {"eds_bytes_per_proxy": statistics.median(eds_bytes)}
    finally:
        for client in clients:
            client.stdin.close()
        for client in clients:
            try:
                client.wait(10)
            except subprocess.TimeoutExpired:
                client.kill()
        await ads.stop(grace=2)  # the clients have gone: let their streams end rather than cancel them


# -- the simulated clients (a separate process) ------------------------------------------------------
def client_process(port: int, n_clients: int, n_services: int, first: int = 0, delta: int = 0) -> None:
    import grpc
    from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    from mesh.xds.fastpath import _field

    def lite_response_class():
        """A look-alike of DiscoveryResponse declaring only version_info (1), type_url (4) and nonce (5),
        for the C protobuf runtime: the resources (field 2) are skipped in C, as Envoy's C++ parser
        would, instead of walked field by field in Python (20 times slower: the benchmark then
        measured its own client)."""
        f = descriptor_pb2.FieldDescriptorProto
        file = descriptor_pb2.FileDescriptorProto(name="bench_lite.proto", package="bench.lite", syntax="proto3")
        msg = file.message_type.add(name="DiscoveryResponseLite")
        # (DeltaDiscoveryResponse numbers its fields the same: system_version_info 1, type_url 4, nonce 5.)
        for name, number in (("version_info", 1), ("type_url", 4), ("nonce", 5)):
            msg.field.add(name=name, number=number, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
        pool = descriptor_pool.DescriptorPool()
        pool.Add(file)
        return message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.lite.DiscoveryResponseLite"))

    response_class = lite_response_class()
    eds_names = [f"outbound|9080||svc-{i}.{NS}.svc.cluster.local" for i in range(n_services)]
    names_bytes = b"".join(_field(3, n.encode()) for n in eds_names)

    def request(type_url: str, version: str, nonce: str, names: bytes = b"") -> bytes:
        return (_field(1, version.encode()) if version else b"") + names + _field(4, type_url.encode()) + \
            (_field(5, nonce.encode()) if nonce else b"")

    def delta_request(type_url: str, nonce: str, subscribe: list[str] = ()) -> bytes:
        """A DeltaDiscoveryRequest: type_url 2, resource_names_subscribe 3, response_nonce 6."""
        return _field(2, type_url.encode()) + b"".join(_field(3, n.encode()) for n in subscribe) + \
            (_field(6, nonce.encode()) if nonce else b"")

    async def one(i: int):
        """One client stream, SotW or Delta, ACKing every response; subscribed to EDS after its first CDS."""
        from envoy_data_plane.envoy.service.discovery.v3 import DeltaDiscoveryRequest

        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        node = {"id": f"sidecar~127.13.{i // 250}.{i % 250 + 1}~client-{i}.{NS}~{NS}.svc.cluster.local",
                "cluster": f"client.{NS}"}
        method = f"/{ADS_SERVICE}/DeltaAggregatedResources" if delta else ADS_METHOD
        call = channel.stream_stream(method)()  # written to directly: no request iterator task
        subscribed = False
        try:
            first = (DeltaDiscoveryRequest if delta else DiscoveryRequest).from_dict({"node": node, "typeUrl": CLUSTER})
            await call.write(bytes(first))
            while True:
                data = await call.read()
                if data is grpc.aio.EOF:
                    break
                msg = response_class.FromString(data)
                del data
                if delta:  # a Delta ACK carries the nonce alone
                    await call.write(delta_request(msg.type_url, msg.nonce))
                elif msg.type_url == CLUSTER:
                    await call.write(request(CLUSTER, msg.version_info, msg.nonce))
                else:  # like Envoy, a SotW EDS ACK names every cluster it watches
                    await call.write(request(msg.type_url, msg.version_info, msg.nonce, names_bytes))
                if msg.type_url == CLUSTER and not subscribed:
                    await call.write(delta_request(ENDPOINT, "", eds_names) if delta
                                     else request(ENDPOINT, "", "", names_bytes))
                    subscribed = True
        except asyncio.CancelledError:
            pass
        except grpc.aio.AioRpcError as err:
            failures[err.code().name] += 1
        finally:
            await channel.close()

    failures: Counter = Counter()

    async def main():
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)  # "go"
        tasks = [asyncio.create_task(one(i)) for i in range(first, first + n_clients)]
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
        if failures:
            print(f"  client streams failed: {dict(failures)}", file=sys.stderr)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client-process":
        client_process(*(int(a) for a in sys.argv[2:7]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--clients", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=30, help="pushes measured with the real Envoy")
    p.add_argument("--scale-rounds", type=int, default=3, help="full + incremental pushes measured at scale")
    p.add_argument("--client-processes", type=int, default=2, help="spread the simulated clients over N processes")
    p.add_argument("--skip-envoy", action="store_true")
    p.add_argument("--skip-scale", action="store_true")
    p.add_argument("--delta", action="store_true",
                   help="after the SotW scale run, the same with Delta xDS clients, and bytes per EDS update compared")
    args = p.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    bench_serialization(args.services)
    if not args.skip_envoy:
        asyncio.run(bench_latency(args.rounds))
    if not args.skip_scale or args.delta:
        sotw = asyncio.run(bench_scale(args.services, args.clients, args.client_processes, args.scale_rounds))
    if args.delta:
        delta = asyncio.run(bench_scale(args.services, args.clients, args.client_processes, args.scale_rounds,
                                        protocol="delta"))
        print(f"bytes sent per EDS update (one service's endpoints) per proxy: SotW {sotw['eds_bytes_per_proxy']:.0f}, "
              f"Delta {delta['eds_bytes_per_proxy']:.0f}")


if __name__ == "__main__":
    main()
