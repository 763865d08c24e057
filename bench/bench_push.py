"""Push benchmarks: serialization cost, push → ACK latency with a real Envoy, and scale.

istiod's own figures are ``pilot_proxy_convergence_time`` and ``pilot_xds_push_time``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/monitoring.go). Run
``.venv/bin/python bench/bench_push.py [--services N] [--clients N] [--scale-rounds N] [--skip-envoy] [--skip-scale]``.

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
4. **scoped** — the same services and clients spread over ``--namespaces`` namespaces, each with a
   Sidecar importing ``./*`` and ``istio-system/*``: a VirtualService edit in one namespace, measured
   until that namespace's clients ACK, and the responses the other clients got (ProxyNeedsPush: none).
5. **pipeline** (``--pipeline``: only this) — the same mesh as a trace (``bench/pipeline.py``) served
   by the real ``Server``: edits enter through its kube client, so each figure covers informers →
   config controller → debounce (100 ms) → PushContext → generators → ADS → ACK. Run once without
   and once with a Sidecar per namespace. Runs 1–4 drive ``AdsServer`` from test fakes.
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
from mesh.xds.resources import to_bytes  # noqa: E402
from mesh.xds.types import CLUSTER, ENDPOINT, short_name

# The figures are the push pipeline's, not istiod's new-stream admission: its limit
# (PILOT_MAX_REQUESTS_PER_SECOND, 25 a second, mesh/xds/ratelimit.py) would make a storm of
# 2000 connections take 80 s. 0 turns it off, as istiod allows; set it to measure with the limit.
os.environ.setdefault("PILOT_MAX_REQUESTS_PER_SECOND", "0")

NS = "bench"


def namespace_of(i: int, namespaces: int) -> str:
    """Service (or client) ``i``'s namespace: one namespace ``bench``, or ``bench-<i mod N>``."""
    return NS if namespaces <= 1 else f"{NS}-{i % namespaces}"


def make_mesh(n_services: int, namespaces: int = 1) -> tuple[FakeRegistry, FakeConfigStore]:
    reg, store = FakeRegistry(), FakeConfigStore()
    for i in range(n_services):
        svc = reg.add_service(f"svc-{i}", namespace=namespace_of(i, namespaces))
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


async def stop_clients(clients: list[subprocess.Popen], ads: AdsServer) -> None:
    for client in clients:
        client.stdin.close()
    for client in clients:
        try:
            client.wait(10)
        except subprocess.TimeoutExpired:
            client.kill()
    await ads.stop(grace=2)  # the clients have gone: let their streams end rather than cancel them


async def bench_scale(n_services: int, n_clients: int, processes: int = 2, rounds: int = 3) -> None:
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

    per = -(-n_clients // processes)  # clients per process, rounded up
    clients = [subprocess.Popen([sys.executable, __file__, "--client-process", str(port), str(min(per, n_clients - k * per)),
                                 str(n_services), str(k * per)], stdin=subprocess.PIPE, text=True)
               for k in range(processes)]
    try:
        await asyncio.sleep(1.0)  # let the client processes import before the storm starts
        phase = Phase(clients)
        for client in clients:
            client.stdin.write("go\n")
            client.stdin.flush()
        version = ads.push_context.version
        storm = await converge((CLUSTER, ENDPOINT), version, phase.t0, timeout=120)
        print(f"scale: {n_services} services × 3 endpoints, {n_clients} ADS clients (CDS+EDS) "
              f"in {processes} client process(es), {os.cpu_count()} cores shared by server and clients")
        print(f"  cold connect storm, all ACKed: {max(storm):.2f} s (target ≤ 10 s); "
              f"{cpu_note(phase.end(), last_send(version, phase.t0))}")
        full_p99, eds_p99, inc_p99 = [], [], []
        for rnd in range(rounds):
            await asyncio.sleep(0.5)
            phase = Phase(clients)
            store.apply("VirtualService", "svc-0", NS, {"hosts": ["svc-0"], "http": [{"route": [
                {"destination": {"host": "svc-0"}}], "timeout": f"{rnd + 1}s"}]})
            ads.push(PushRequest.of(TriggerReason.CONFIG, configs={ConfigKey("VirtualService", "svc-0", NS)}))
            version = ads.push_context.version
            # a VirtualService changes no endpoints: istiod (and mesh) send CDS, and no EDS
            full = await converge((CLUSTER,), version, phase.t0)
            full_p99.append(pct(full, 0.99))
            print(f"  round {rnd + 1} full push (VirtualService edit: CDS, no EDS): p50 {statistics.median(full):.2f} s, "
                  f"p99 {full_p99[-1]:.2f} s; {cpu_note(phase.end(), last_send(version, phase.t0))}")
            await asyncio.sleep(0.5)
            for t in (CLUSTER, ENDPOINT):  # an incremental EDS push keeps the version: count anew
                acks.pop((t, version), None)
            phase = Phase(clients)
            host = f"svc-1.{NS}.svc.cluster.local"
            reg.set_endpoints(host, 9080, [endpoint(f"127.12.0.{j}", app="svc-1") for j in range(1, 5 + rnd)])
            ads.push(PushRequest.of(TriggerReason.ENDPOINT, full=False, configs={ConfigKey("ServiceEntry", host, NS)}))
            inc = await converge((ENDPOINT,), version, phase.t0)
            inc_p99.append(pct(inc, 0.99))
            print(f"  round {rnd + 1} incremental EDS of one service: p50 {statistics.median(inc):.2f} s, "
                  f"p99 {inc_p99[-1]:.2f} s; {cpu_note(phase.end())}")
        # A change EDS does depend on (a DestinationRule: subsets and load balancing) sends CDS and EDS,
        # every ClusterLoadAssignment to every client — twice the bytes of the push above.
        for rnd in range(rounds):
            await asyncio.sleep(0.5)
            phase = Phase(clients)
            store.apply("DestinationRule", "svc-0", NS, {"host": "svc-0", "trafficPolicy": {
                "connectionPool": {"tcp": {"maxConnections": 100 + rnd}}}})
            ads.push(PushRequest.of(TriggerReason.CONFIG, configs={ConfigKey("DestinationRule", "svc-0", NS)}))
            version = ads.push_context.version
            both = await converge((CLUSTER, ENDPOINT), version, phase.t0)
            eds_p99.append(pct(both, 0.99))
            print(f"  round {rnd + 1} full push (DestinationRule edit: CDS+EDS): p50 {statistics.median(both):.2f} s, "
                  f"p99 {eds_p99[-1]:.2f} s; {cpu_note(phase.end(), last_send(version, phase.t0))}")
        print(summary("full push after a config change (VirtualService: CDS)", full_p99, 2))
        print(summary("full push carrying EDS too (DestinationRule: CDS+EDS)", eds_p99, 2))
        print(summary("incremental EDS", inc_p99, 1))
        print(f"  server peak RSS: {peak_rss_mb():.0f} MB (target ≤ 512 MB)")
    finally:
        await stop_clients(clients, ads)


# -- 4. scoped: a Sidecar per namespace ---------------------------------------------------------------
async def bench_scoped(n_services: int, n_clients: int, namespaces: int, processes: int = 2, rounds: int = 3) -> None:
    """Services and clients spread over ``namespaces``; each namespace has a Sidecar importing
    ``./*`` and ``istio-system/*``. A VirtualService edit in one namespace must reach that
    namespace's clients and send nothing to the others (ProxyNeedsPush)."""
    reg, store = make_mesh(n_services, namespaces)
    for k in range(namespaces):
        store.apply("Sidecar", "default", namespace_of(k, namespaces), {"egress": [{"hosts": ["./*", "istio-system/*"]}]})
    discovery = DiscoveryServer(RealClock())
    ads = AdsServer(discovery, None, reg, store)
    port = await ads.start()
    acks: dict[tuple[str, str], dict[int, float]] = {}
    ads.ack_listeners.append(lambda con, t, v, n: acks.setdefault((t, v), {}).setdefault(con.number, time.perf_counter()))
    per = -(-n_clients // processes)
    clients = [subprocess.Popen([sys.executable, __file__, "--client-process", str(port), str(min(per, n_clients - k * per)),
                                 str(n_services), str(k * per), str(namespaces)], stdin=subprocess.PIPE, text=True)
               for k in range(processes)]
    try:
        await asyncio.sleep(1.0)
        phase = Phase(clients)
        for client in clients:
            client.stdin.write("go\n")
            client.stdin.flush()
        version = ads.push_context.version
        while len(acks.get((CLUSTER, version), {})) < n_clients or len(acks.get((ENDPOINT, version), {})) < n_clients:
            await asyncio.sleep(0.01)
            if time.perf_counter() - phase.t0 > 120:
                raise TimeoutError("scoped connect storm did not converge")
        print(f"scoped: {n_services} services in {namespaces} namespaces, a Sidecar per namespace (./*, istio-system/*), "
              f"{n_clients} clients; connect storm {time.perf_counter() - phase.t0:.2f} s; {cpu_note(phase.end())}")
        target_ns = namespace_of(0, namespaces)
        in_ns = {c.number for c in ads.connections.values() if c.state is not None and c.state.proxy.namespace == target_ns}
        p99s = []
        for rnd in range(rounds):
            await asyncio.sleep(0.5)
            sends_before = {n: sum(c.sends.values()) for n, c in ads.connections.items()}
            skipped_before = ads.skipped_pushes
            phase = Phase(clients)
            store.apply("VirtualService", "svc-0", target_ns, {"hosts": ["svc-0"], "http": [{"route": [
                {"destination": {"host": "svc-0"}}], "timeout": f"{rnd + 1}s"}]})
            ads.push(PushRequest.of(TriggerReason.CONFIG, configs={ConfigKey("VirtualService", "svc-0", target_ns)}))
            version = ads.push_context.version
            while len(acks.get((CLUSTER, version), {})) < len(in_ns):
                await asyncio.sleep(0.005)
                if time.perf_counter() - phase.t0 > 60:
                    raise TimeoutError("scoped push did not converge")
            times = [acks[(CLUSTER, version)][n] - phase.t0 for n in in_ns]
            await asyncio.sleep(0.3)  # let any stray send show up before counting
            others = sum(sum(c.sends.values()) - sends_before.get(n, 0) for n, c in ads.connections.items()
                         if n not in in_ns)
            p99s.append(pct(times, 0.99))
            print(f"  round {rnd + 1}: VirtualService edit in {target_ns} reached its {len(in_ns)} clients, p99 "
                  f"{p99s[-1]:.3f} s; responses sent to the other {n_clients - len(in_ns)}: {others}; "
                  f"skipped {ads.skipped_pushes - skipped_before}; {cpu_note(phase.end())}")
        print(f"  scoped VirtualService edit: p99 median {statistics.median(p99s):.3f} s, worst {max(p99s):.3f} s "
              f"(target p99 ≤ 0.2 s, nothing sent to other namespaces)")
        print(f"  server peak RSS: {peak_rss_mb():.0f} MB")
    finally:
        await stop_clients(clients, ads)


# -- 5. the real pipeline -------------------------------------------------------------------------------
async def bench_pipeline(trace: Path, n_services: int, n_clients: int, namespaces: int, processes: int,
                         rounds: int, scoped: bool) -> None:
    """The mesh as a trace served by the real Server (pipeline.py); edits go in through its kube
    client, so each measurement runs informers → config controller → debounce (100 ms) →
    PushContext → generators → ADS, until every concerned client has ACKed."""
    from pipeline import namespace_of as pipeline_ns
    from pipeline import sidecar

    from mesh.bootstrap import Server, ServerArgs
    from mesh.bootstrap.args import DEFAULT_PORTS

    print(f"pipeline{' (scoped: a Sidecar per namespace)' if scoped else ''}: {n_services} services in "
          f"{namespaces} namespaces, {n_clients} clients")
    server = Server(ServerArgs(trace=str(trace), speed=0, clock=RealClock(), ports={n: 0 for n in DEFAULT_PORTS}))
    server.run_all()
    await server.start()
    ads, kube = server.ads, server.kube_client
    if scoped:
        for k in range(namespaces):
            kube.create(sidecar(pipeline_ns(k, namespaces)))
    while len(ads.push_context.services) < n_services or (scoped and len(ads.push_context.sidecars) < namespaces):
        await asyncio.sleep(0.1)
    acks: dict[tuple[str, str], dict[int, float]] = {}
    ads.ack_listeners.append(lambda con, t, v, n: acks.setdefault((t, v), {}).setdefault(con.number, time.perf_counter()))
    per = -(-n_clients // processes)
    clients = [subprocess.Popen([sys.executable, __file__, "--client-process", str(ads.port),
                                 str(min(per, n_clients - k * per)), str(n_services), str(k * per), str(namespaces)],
                                stdin=subprocess.PIPE, text=True) for k in range(processes)]

    def upsert(obj: dict) -> None:
        meta = obj["metadata"]
        (kube.update if kube.get(obj["kind"], meta["name"], meta["namespace"]) else kube.create)(obj)

    async def converge(types, members, since: float, timeout: float = 120) -> list[float]:
        """Per client in ``members``, the time until it ACKed a version newer than ``since``'s of every type."""
        deadline = time.perf_counter() + timeout
        while True:
            version = ads.push_context.version
            got = [acks.get((t, version), {}) for t in types]
            if version != since and all(members <= set(g) for g in got):
                return [max(g[n] for g in got) - t_start for n in members]
            if time.perf_counter() > deadline:
                raise TimeoutError(f"version {version}: {[len(set(g) & members) for g in got]} of {len(members)}")
            await asyncio.sleep(0.005)

    try:
        await asyncio.sleep(1.0)
        phase = Phase(clients)
        t_start = phase.t0
        for client in clients:
            client.stdin.write("go\n")
            client.stdin.flush()
        while len(ads.connections) < n_clients:
            await asyncio.sleep(0.05)
        everyone = set(ads.connections)
        storm = await converge((CLUSTER, ENDPOINT), everyone, "")
        print(f"  connect storm, {n_clients} clients all ACKed CDS+EDS: {max(storm):.2f} s; {cpu_note(phase.end())}")
        target = pipeline_ns(0, namespaces)
        in_ns = {n for n, c in ads.connections.items() if c.state is not None and c.state.proxy.namespace == target}
        concerned = in_ns if scoped else everyone
        figures: dict[str, list[float]] = {}
        for rnd in range(rounds):
            await asyncio.sleep(0.5)
            sends = {n: sum(c.sends.values()) for n, c in ads.connections.items()}
            before, phase = ads.push_context.version, Phase(clients)
            t_start = phase.t0
            upsert({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                    "metadata": {"name": "svc-0", "namespace": target},
                    "spec": {"hosts": ["svc-0"], "http": [{"route": [{"destination": {"host": "svc-0"}}],
                                                           "timeout": f"{rnd + 1}s"}]}})
            times = await converge((CLUSTER,), concerned, before)
            await asyncio.sleep(0.3)
            others = sum(sum(c.sends.values()) - sends.get(n, 0) for n, c in ads.connections.items() if n not in concerned)
            figures.setdefault("vs", []).append(pct(times, 0.99))
            print(f"  round {rnd + 1} VirtualService edit in {target}: {len(concerned)} clients p99 {figures['vs'][-1]:.2f} s, "
                  f"responses to the other {n_clients - len(concerned)}: {others}; {cpu_note(phase.end())}")
            if scoped:
                continue
            await asyncio.sleep(0.5)
            before, phase = ads.push_context.version, Phase(clients)
            t_start = phase.t0
            upsert({"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
                    "metadata": {"name": "svc-0", "namespace": target},
                    "spec": {"host": "svc-0", "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 100 + rnd}}}}})
            times = await converge((CLUSTER, ENDPOINT), concerned, before)
            figures.setdefault("dr", []).append(pct(times, 0.99))
            print(f"  round {rnd + 1} DestinationRule edit (CDS+EDS): p99 {figures['dr'][-1]:.2f} s; {cpu_note(phase.end())}")
        for name, target_p99 in (("vs", 0.2 if scoped else 0.8), ("dr", 1.3)):
            if name in figures:
                print(f"  {'scoped ' if scoped else ''}{'VirtualService' if name == 'vs' else 'DestinationRule'} edit: "
                      f"p99 median {statistics.median(figures[name]):.2f} s, worst {max(figures[name]):.2f} s "
                      f"(issue 12's target p99 ≤ {target_p99:g} s)")
        print(f"  server peak RSS: {peak_rss_mb():.0f} MB (target ≤ 512 MB)")
    finally:
        await stop_clients(clients, ads)
        await server.stop()


# -- the simulated clients (a separate process) ------------------------------------------------------
def client_process(port: int, n_clients: int, n_services: int, first: int = 0, namespaces: int = 1) -> None:
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
        for name, number in (("version_info", 1), ("type_url", 4), ("nonce", 5)):
            msg.field.add(name=name, number=number, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
        pool = descriptor_pool.DescriptorPool()
        pool.Add(file)
        return message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.lite.DiscoveryResponseLite"))

    response_class = lite_response_class()
    # what each client's CDS holds: every service, or (scoped) those of its own namespace
    by_ns: dict[str, bytes] = {}
    for i in range(n_services):
        ns = namespace_of(i, namespaces)
        by_ns[ns] = by_ns.get(ns, b"") + _field(3, f"outbound|9080||svc-{i}.{ns}.svc.cluster.local".encode())
    all_names = b"".join(by_ns.values())

    def request(type_url: str, version: str, nonce: str, names: bytes = b"") -> bytes:
        return (_field(1, version.encode()) if version else b"") + names + _field(4, type_url.encode()) + \
            (_field(5, nonce.encode()) if nonce else b"")

    async def one(i: int):
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        ns = namespace_of(i, namespaces)
        names_bytes = by_ns[ns] if namespaces > 1 else all_names
        node = {"id": f"sidecar~127.13.{i // 250}.{i % 250 + 1}~client-{i}.{ns}~{ns}.svc.cluster.local",
                "cluster": f"client.{ns}"}
        call = channel.stream_stream(ADS_METHOD)()  # written to directly: no request iterator task
        subscribed = False
        try:
            await call.write(bytes(DiscoveryRequest.from_dict({"node": node, "typeUrl": CLUSTER})))
            while True:
                data = await call.read()
                if data is grpc.aio.EOF:
                    break
                msg = response_class.FromString(data)
                del data
                if msg.type_url == CLUSTER:
                    await call.write(request(CLUSTER, msg.version_info, msg.nonce))
                    if not subscribed:
                        await call.write(request(ENDPOINT, "", "", names_bytes))
                        subscribed = True
                else:  # like Envoy, an EDS ACK names every cluster it watches
                    await call.write(request(msg.type_url, msg.version_info, msg.nonce, names_bytes))
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
    p.add_argument("--namespaces", type=int, default=100, help="namespaces of the scoped run")
    p.add_argument("--skip-scoped", action="store_true")
    p.add_argument("--pipeline", action="store_true", help="only the real-pipeline runs (full, then scoped)")
    p.add_argument("--replicas", type=int, default=2, help="pods per service in the pipeline trace")
    args = p.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    if args.pipeline:
        # built in another process: the SimCluster's memory must not count as the server's
        t0 = time.perf_counter()
        trace = Path(subprocess.run([sys.executable, str(Path(__file__).with_name("pipeline.py")), str(args.services),
                                     str(args.namespaces), str(args.replicas)], check=True, capture_output=True,
                                    text=True).stdout.strip())
        print(f"pipeline trace: {args.services} services × {args.replicas} pods in {args.namespaces} namespaces, "
              f"built in {time.perf_counter() - t0:.0f} s")
        for scoped in (False, True):
            asyncio.run(bench_pipeline(trace, args.services, args.clients, args.namespaces,
                                       args.client_processes, args.scale_rounds, scoped))
        return
    bench_serialization(args.services)
    if not args.skip_envoy:
        asyncio.run(bench_latency(args.rounds))
    if not args.skip_scale:
        asyncio.run(bench_scale(args.services, args.clients, args.client_processes, args.scale_rounds))
    if not args.skip_scoped:
        asyncio.run(bench_scoped(args.services, args.clients, args.namespaces, args.client_processes, args.scale_rounds))


if __name__ == "__main__":
    main()
