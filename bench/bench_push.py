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
   config controller → debounce (100 ms) → PushContext → generators → ADS → ACK: a connect storm,
   then rounds of a VirtualService edit (CDS), an incremental EDS push (a pod of one service
   unready, then ready again, through its EndpointSlice) and a DestinationRule edit (CDS+EDS); run
   once without and once with a Sidecar per namespace (the scoped VirtualService edit). First it
   runs the fan-out baseline (6; ``--no-baseline`` skips it) and ends with a table: each figure,
   its baseline, their ratio and issue 12's target. Runs 1–4 drive ``AdsServer`` from test fakes.
6. **fan-out** (``--fanout``: only this) — the raw baseline (``bench/fanout.py``): one bare
   ``grpc.aio`` server sending the pipeline's own pre-serialized responses to the same clients.
7. **delta** (``--delta``: only this) — the pipeline with Delta clients (DeltaAggregatedResources),
   then with SotW ones: storm, incremental EDS p99 (issue 13's target ≤ 0.3 s), and the bytes
   each proxy is sent for an EDS update and for a DestinationRule edit, side by side.

Modes 5–7 build the pipeline trace once per size and keep it in the temp directory. The measured
figures, and the machine load they were measured under, are in ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (  # noqa: E402
    Phase,
    cpu_note,
    end_clients,
    go,
    load_average,
    pct,
    peak_rss_mb,
    print_table,
    start_clients,
)
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
async def stop_clients(clients: list[subprocess.Popen], ads: AdsServer) -> None:
    end_clients(clients)
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

    clients = start_clients(port, n_clients, n_services, processes)
    try:
        await asyncio.sleep(1.0)  # let the client processes import before the storm starts
        phase = Phase(clients)
        go(clients)
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
    clients = start_clients(port, n_clients, n_services, processes, namespaces, scoped=True)
    try:
        await asyncio.sleep(1.0)
        phase = Phase(clients)
        go(clients)
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
def sent_bytes(ads: AdsServer, short: str, protocol: str) -> float:
    """``mesh_xds_sent_bytes``: bytes of ``short`` (CDS, EDS) sent over ``protocol`` so far."""
    for metric in ads.metrics.sent_bytes.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("type") == short.lower() and \
                    sample.labels.get("protocol") == protocol:
                return sample.value
    return 0.0


async def bench_pipeline(trace: Path, n_services: int, n_clients: int, namespaces: int, processes: int,
                         rounds: int, scoped: bool, protocol: str = "sotw") -> dict:
    """The mesh as a trace served by the real Server (pipeline.py); edits go in through its kube
    client, so each measurement runs informers → config controller → debounce (100 ms) →
    PushContext → generators → ADS, until every concerned client has ACKed. Returns the figures
    (``benchlib.FIGURES`` keys; with ``protocol`` ``delta`` they are the Delta clients')."""
    from pipeline import namespace_of as pipeline_ns
    from pipeline import sidecar

    from mesh.bootstrap import Server, ServerArgs
    from mesh.bootstrap.args import DEFAULT_PORTS

    print(f"pipeline{' (scoped: a Sidecar per namespace)' if scoped else ''}: {n_services} services in "
          f"{namespaces} namespaces, {n_clients} {'Delta' if protocol == 'delta' else 'SotW'} clients")
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
    clients = start_clients(ads.port, n_clients, n_services, processes, namespaces, scoped=scoped, protocol=protocol)

    def upsert(obj: dict) -> None:
        meta = obj["metadata"]
        (kube.update if kube.get(obj["kind"], meta["name"], meta["namespace"]) else kube.create)(obj)

    async def converge(types, members, since: str | None, timeout: float = 120) -> list[float]:
        """Per client in ``members``, the time until it ACKed every type in ``types`` at a version
        other than ``since`` (None: the current version, for an incremental push that keeps it)."""
        deadline = time.perf_counter() + timeout
        while True:
            version = ads.push_context.version
            got = [acks.get((t, version), {}) for t in types]
            if version != since and all(members <= set(g) for g in got):
                return [max(g[n] for g in got) - t_start for n in members]
            if time.perf_counter() > deadline:
                raise TimeoutError(f"version {version}: {[len(set(g) & members) for g in got]} of {len(members)}")
            await asyncio.sleep(0.005)

    figures: dict = {}
    try:
        await asyncio.sleep(1.0)
        phase = Phase(clients)
        t_start = phase.t0
        go(clients)
        while len(ads.connections) < n_clients:
            await asyncio.sleep(0.05)
        everyone = set(ads.connections)
        storm = await converge((CLUSTER, ENDPOINT), everyone, "")
        figures["storm"] = max(storm)
        print(f"  connect storm, {n_clients} clients all ACKed CDS+EDS: {max(storm):.2f} s; {cpu_note(phase.end())}")
        target = pipeline_ns(0, namespaces)
        in_ns = {n for n, c in ads.connections.items() if c.state is not None and c.state.proxy.namespace == target}
        concerned = in_ns if scoped else everyone
        name = "scoped" if scoped else "vs"
        # svc-1's EndpointSlice: one pod goes unready and back, an EDS-only push each time
        host_ns = pipeline_ns(1, namespaces)
        eds_slice = next(o for o in kube.list_objects("EndpointSlice") if o["metadata"]["namespace"] == host_ns
                         and o["metadata"].get("labels", {}).get("kubernetes.io/service-name") == "svc-1")
        per_proxy: dict[str, list[float]] = {}

        async def incremental_eds(rnd: int) -> None:
            nonlocal eds_slice, t_start
            await asyncio.sleep(0.5)
            for t in (CLUSTER, ENDPOINT):  # an incremental EDS push keeps the version: count anew
                acks.pop((t, ads.push_context.version), None)
            sent0 = sent_bytes(ads, "EDS", protocol)
            phase = Phase(clients)
            t_start = phase.t0
            eds_slice = copy.deepcopy(eds_slice)
            conditions = eds_slice["endpoints"][0].setdefault("conditions", {})
            conditions["ready"] = not conditions.get("ready", True)
            kube.update(eds_slice)
            times = await converge((ENDPOINT,), everyone, None)
            figures.setdefault("eds", []).append(pct(times, 0.99))
            per_proxy.setdefault("eds", []).append((sent_bytes(ads, "EDS", protocol) - sent0) / len(everyone))
            print(f"  round {rnd + 1} incremental EDS (svc-1: a pod {'unready' if not conditions['ready'] else 'ready'}): "
                  f"p99 {figures['eds'][-1]:.2f} s, {per_proxy['eds'][-1]:.0f} EDS bytes per proxy; {cpu_note(phase.end())}")

        async def destination_rule(rnd: int) -> None:
            """A DestinationRule edit: SotW sends every cluster and assignment; Delta only the changed
            cluster (the assignments' bytes do not change), so only CDS is waited for there."""
            nonlocal t_start
            await asyncio.sleep(0.5)
            sent0 = sent_bytes(ads, "CDS", protocol) + sent_bytes(ads, "EDS", protocol)
            before, phase = ads.push_context.version, Phase(clients)
            t_start = phase.t0
            upsert({"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
                    "metadata": {"name": "svc-0", "namespace": target},
                    "spec": {"host": "svc-0", "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 100 + rnd}}}}})
            times = await converge((CLUSTER,) if protocol == "delta" else (CLUSTER, ENDPOINT), concerned, before)
            await asyncio.sleep(0.3)  # anything else this push sends is counted too
            figures.setdefault("dr", []).append(pct(times, 0.99))
            per_proxy.setdefault("dr", []).append(
                (sent_bytes(ads, "CDS", protocol) + sent_bytes(ads, "EDS", protocol) - sent0) / len(everyone))
            print(f"  round {rnd + 1} DestinationRule edit (CDS+EDS): p99 {figures['dr'][-1]:.2f} s, "
                  f"{per_proxy['dr'][-1] / 1e3:.1f} kB CDS+EDS per proxy; {cpu_note(phase.end())}")

        for rnd in range(rounds):
            if protocol == "delta":  # a VirtualService changes no cluster: a Delta stream is sent nothing
                await incremental_eds(rnd)
                if rnd == 0:
                    await destination_rule(rnd)
                continue
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
            figures.setdefault(name, []).append(pct(times, 0.99))
            print(f"  round {rnd + 1} VirtualService edit in {target}: {len(concerned)} clients p99 {figures[name][-1]:.2f} s, "
                  f"responses to the other {n_clients - len(concerned)}: {others}; {cpu_note(phase.end())}")
            if not scoped:
                await incremental_eds(rnd)
                await destination_rule(rnd)
        figures["rss"] = peak_rss_mb()
        figures["bytes"] = {k: statistics.median(v) for k, v in per_proxy.items()}
        print(f"  server peak RSS: {figures['rss']:.0f} MB")
    finally:
        await stop_clients(clients, ads)
        await server.stop()
    return figures


TRACE_CACHE = Path(tempfile.gettempdir()) / "mesh-bench-traces"


def build_pipeline_trace(args) -> Path:
    """The pipeline's trace, built in another process (the SimCluster's memory must not count as the
    server's), once per size: later runs take it from ``TRACE_CACHE`` (its build is deterministic)."""
    cached = TRACE_CACHE / f"pipeline-{args.services}-{args.namespaces}-{args.replicas}.jsonl"
    if cached.exists():
        print(f"pipeline trace: {args.services} services × {args.replicas} pods in {args.namespaces} namespaces "
              f"({cached}, built earlier)")
        return cached
    t0 = time.perf_counter()
    trace = Path(subprocess.run([sys.executable, str(Path(__file__).with_name("pipeline.py")), str(args.services),
                                 str(args.namespaces), str(args.replicas)], check=True, capture_output=True,
                                text=True).stdout.strip())
    TRACE_CACHE.mkdir(exist_ok=True)
    shutil.move(trace, cached)
    shutil.rmtree(trace.parent, ignore_errors=True)
    print(f"pipeline trace: {args.services} services × {args.replicas} pods in {args.namespaces} namespaces, "
          f"built in {time.perf_counter() - t0:.0f} s (kept as {cached})")
    return cached


def fanout_baseline(args, trace: Path) -> dict:
    """``--fanout``: the responses captured from the pipeline (another process), then sent raw."""
    from fanout import run_fanout

    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as folder:
        out = Path(folder) / "responses.pickle"
        subprocess.run([sys.executable, str(Path(__file__).with_name("fanout.py")), "--capture", str(trace),
                        str(args.services), str(args.namespaces), str(out)], check=True)
        entries = pickle.loads(out.read_bytes())
    return asyncio.run(run_fanout(entries, args.services, args.clients, args.namespaces, args.client_processes,
                                  args.scale_rounds))


# -- the simulated clients (a separate process) ------------------------------------------------------
def client_process(port: int, n_clients: int, n_services: int, first: int = 0, namespaces: int = 1,
                   scoped: int = 0, protocol: str = "sotw") -> None:
    """``n_clients`` ADS streams, clients ``first``… (``benchlib.start_clients``): SotW like Envoy
    (CDS, then EDS for its clusters, ACKing everything) or Delta (a wildcard CDS subscription, then
    EDS subscribed by name, ACKing each response's nonce)."""
    import grpc
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    from mesh.xds.delta import DELTA_METHOD
    from mesh.xds.fastpath import _field

    delta = protocol == "delta"
    method = ADS_METHOD.rsplit("/", 1)[0] + "/" + DELTA_METHOD if delta else ADS_METHOD

    def lite_response_class():
        """A look-alike of (Delta)DiscoveryResponse declaring only version_info / system_version_info (1),
        type_url (4) and nonce (5) — the same numbers in both — for the C protobuf runtime: the resources
        (field 2) are skipped in C, as Envoy's C++ parser would, instead of walked field by field in
        Python (20 times slower: the benchmark then measured its own client)."""
        f = descriptor_pb2.FieldDescriptorProto
        file = descriptor_pb2.FileDescriptorProto(name="bench_lite.proto", package="bench.lite", syntax="proto3")
        msg = file.message_type.add(name="DiscoveryResponseLite")
        for name, number in (("version_info", 1), ("type_url", 4), ("nonce", 5)):
            msg.field.add(name=name, number=number, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
        pool = descriptor_pool.DescriptorPool()
        pool.Add(file)
        return message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.lite.DiscoveryResponseLite"))

    response_class = lite_response_class()
    # what each client's EDS watches: every service, or (scoped) those of its own namespace; as
    # SotW's repeated resource_names (3) or Delta's resource_names_subscribe (3): the same field number
    by_ns: dict[str, bytes] = {}
    for i in range(n_services):
        ns = namespace_of(i, namespaces)
        by_ns[ns] = by_ns.get(ns, b"") + _field(3, f"outbound|9080||svc-{i}.{ns}.svc.cluster.local".encode())
    all_names = b"".join(by_ns.values())

    def request(type_url: str, version: str, nonce: str, names: bytes = b"") -> bytes:
        if delta:  # DeltaDiscoveryRequest: type_url 2, subscribe 3, response_nonce 6
            return _field(2, type_url.encode()) + names + (_field(6, nonce.encode()) if nonce else b"")
        return (_field(1, version.encode()) if version else b"") + names + _field(4, type_url.encode()) + \
            (_field(5, nonce.encode()) if nonce else b"")

    async def one(i: int):
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        ns = namespace_of(i, namespaces)
        names_bytes = by_ns[ns] if scoped else all_names
        node = _field(1, f"sidecar~127.13.{i // 250}.{i % 250 + 1}~client-{i}.{ns}~{ns}.svc.cluster.local".encode()) + \
            _field(2, f"client.{ns}".encode())  # core.v3.Node: id 1, cluster 2
        call = channel.stream_stream(method)()  # written to directly: no request iterator task
        subscribed = False
        try:
            # the first request carries the node: field 2 of DiscoveryRequest, field 1 of the Delta one
            await call.write(_field(1 if delta else 2, node) + request(CLUSTER, "", ""))
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
                elif delta:  # a Delta ACK names nothing: the subscription stands
                    await call.write(request(msg.type_url, msg.version_info, msg.nonce))
                else:  # like Envoy, a SotW EDS ACK names every cluster it watches
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
        client_process(*(int(a) for a in sys.argv[2:8]), sys.argv[8])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--clients", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=30, help="pushes measured with the real Envoy")
    p.add_argument("--scale-rounds", type=int, default=3, help="full + incremental pushes measured at scale")
    p.add_argument("--client-processes", type=int, default=2, help="spread the simulated clients over N processes")
    p.add_argument("--skip-envoy", action="store_true")
    p.add_argument("--skip-scale", action="store_true")
    p.add_argument("--namespaces", type=int, default=100, help="namespaces of the scoped and pipeline runs")
    p.add_argument("--skip-scoped", action="store_true")
    p.add_argument("--pipeline", action="store_true", help="only the real-pipeline runs (full, then scoped), "
                   "beside the fan-out baseline")
    p.add_argument("--fanout", action="store_true", help="only the raw fan-out baseline")
    p.add_argument("--delta", action="store_true", help="the real pipeline with Delta clients, then SotW ones")
    p.add_argument("--no-baseline", action="store_true", help="--pipeline without the fan-out baseline")
    p.add_argument("--replicas", type=int, default=2, help="pods per service in the pipeline trace")
    p.add_argument("--one-run", choices=sorted(RUNS), help=argparse.SUPPRESS)  # one run of the modes above
    args = p.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    if args.pipeline or args.fanout or args.delta or args.one_run:
        if not args.one_run:
            print(f"load average at start: {load_average()}")
        run_pipeline_modes(args, build_pipeline_trace(args))
        return
    bench_serialization(args.services)
    if not args.skip_envoy:
        asyncio.run(bench_latency(args.rounds))
    if not args.skip_scale:
        asyncio.run(bench_scale(args.services, args.clients, args.client_processes, args.scale_rounds))
    if not args.skip_scoped:
        asyncio.run(bench_scoped(args.services, args.clients, args.namespaces, args.client_processes, args.scale_rounds))


RUNS = {"fanout": None, "sotw": (False, "sotw"), "scoped": (True, "sotw"), "delta": (False, "delta")}


def one_run(args, trace: Path, run: str) -> dict:
    """One measured run in this process (``--one-run``): its peak RSS is its own."""
    if run == "fanout":
        return fanout_baseline(args, trace)
    scoped, protocol = RUNS[run]
    return asyncio.run(bench_pipeline(trace, args.services, args.clients, args.namespaces,
                                      args.client_processes, args.scale_rounds, scoped, protocol))


def in_process(args, run: str) -> dict:
    """``one_run`` in a fresh process, its output passed through; the figures come back on its last line."""
    argv = [sys.executable, __file__, "--one-run", run, "--services", str(args.services), "--clients", str(args.clients),
            "--namespaces", str(args.namespaces), "--replicas", str(args.replicas),
            "--client-processes", str(args.client_processes), "--scale-rounds", str(args.scale_rounds)]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    figures = None
    for line in child.stdout:
        if line.startswith(FIGURES_LINE):
            figures = json.loads(line[len(FIGURES_LINE):])
        else:
            print(line, end="", flush=True)
    if child.wait() != 0 or figures is None:
        raise RuntimeError(f"the {run} run failed (exit status {child.returncode})")
    return figures


FIGURES_LINE = "FIGURES "


def run_pipeline_modes(args, trace: Path) -> None:
    """Each run in its own process, so that each peak RSS is that run's server alone."""
    if args.one_run:
        print(FIGURES_LINE + json.dumps(one_run(args, trace, args.one_run)), flush=True)
        return
    baseline = in_process(args, "fanout") if args.fanout or (args.pipeline and not args.no_baseline) else None
    if args.fanout:
        print_table(baseline, None, "fan-out baseline")
        return
    if args.delta:
        d, s = in_process(args, "delta"), in_process(args, "sotw")
        print_table({k: d[k] for k in ("storm", "eds", "rss") if k in d}, s, "Delta clients beside SotW ones, "
                    "the same pipeline", baseline_label="SotW", targets={"eds": 0.3})
        for key, what in (("eds", "an incremental EDS push (one service's endpoints)"),
                          ("dr", "a DestinationRule edit (CDS+EDS)")):
            if key in d["bytes"] and key in s["bytes"]:
                print(f"  bytes sent per proxy for {what}: Delta {d['bytes'][key]:.0f}, SotW {s['bytes'][key]:.0f} "
                      f"({d['bytes'][key] / s['bytes'][key]:.3g}x)")
        return
    measured = in_process(args, "sotw")
    if not args.skip_scoped:  # the scoped run adds its own figure (the unscoped run's RSS is the one shown)
        measured["scoped"] = in_process(args, "scoped")["scoped"]
    print_table(measured, baseline, "pipeline beside the fan-out baseline")
    print("  (each pipeline push waits out the debounce first, PILOT_DEBOUNCE_AFTER = 100 ms; the fan-out has none)")


if __name__ == "__main__":
    main()
