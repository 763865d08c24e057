"""The raw fan-out baseline of ``bench_push.py --fanout``: one ``grpc.aio`` server sending
pre-serialized bytes — the very resources the real pipeline sends, captured from it — to the same
simulated clients, measured the same way. It builds nothing and decides nothing, so its figures
are what gRPC, the clients and this machine cost on their own; the pipeline's figures are read
against them (issue 12: "within 1.2× of it").

Two steps, in two processes so neither's memory counts as the other's:

1. ``capture`` (``python bench/fanout.py --capture TRACE SERVICES NAMESPACES OUT``): the real
   ``Server`` on the pipeline trace generates, for one sidecar like the clients, its CDS, its EDS
   (the clients' cluster names), one service's ClusterLoadAssignment (an incremental EDS push),
   and the same with a Sidecar per namespace (the scoped run); the ``Any`` entries are pickled.
2. ``run_fanout``: the server answers each client's first CDS and EDS request with them, then
   pushes new versions of the same bytes — CDS (a VirtualService edit), one CLA (incremental EDS),
   CDS+EDS (a DestinationRule edit), the scoped CDS to one namespace's clients — each response
   assembled once and written to every stream, at most ``PILOT_PUSH_THROTTLE`` writes at a time
   (istiod's push throttle; without one, every stream's response would sit in gRPC's buffers at once).

No Go counterpart.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import Phase, cpu_note, end_clients, go, pct, peak_rss_mb, start_clients  # noqa: E402

from mesh.xds.fastpath import (  # noqa: E402
    assemble_discovery_response,
    collect_garbage_less_often,
    decode_discovery_request,
    decode_node,
)
from mesh.xds.types import CLUSTER, ENDPOINT  # noqa: E402

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
PUSH_THROTTLE = int(os.environ.get("PILOT_PUSH_THROTTLE", "100"))


def client_cluster_names(n_services: int, namespaces: int, namespace: str | None) -> list[str]:
    """The EDS names a bench client watches (``bench_push.client_process``): every ``svc-<i>``, or
    (scoped) those of its own namespace."""
    out = []
    for i in range(n_services):
        ns = f"bench-{i % namespaces}"
        if namespace is None or ns == namespace:
            out.append(f"outbound|9080||svc-{i}.{ns}.svc.cluster.local")
    return out


# -- 1. capture, from the real pipeline -------------------------------------------------------------
async def capture(trace: Path, n_services: int, namespaces: int, out: Path) -> None:
    from pipeline import sidecar

    from mesh.bootstrap import Server, ServerArgs
    from mesh.bootstrap.args import DEFAULT_PORTS
    from mesh.clock import RealClock
    from mesh.model.proxy import parse_node_id
    from mesh.xds.generator import ProxyState, WatchedResource
    from mesh.xds.proxy_dependencies import compute_proxy_state

    server = Server(ServerArgs(trace=str(trace), speed=0, clock=RealClock(), ports={n: 0 for n in DEFAULT_PORTS}))
    server.run_all()
    await server.start()
    ads = server.ads
    while len(ads.push_context.services) < n_services:
        await asyncio.sleep(0.1)
    ns = "bench-0"

    def generate(names: list[str]) -> tuple[list[bytes], list[bytes]]:
        state = ProxyState(parse_node_id(f"sidecar~127.13.0.1~client-0.{ns}~{ns}.svc.cluster.local", {}))
        compute_proxy_state(state, ads.push_context, None)
        cds = ads.generate(state, CLUSTER, WatchedResource(CLUSTER), None)
        eds = ads.generate(state, ENDPOINT, WatchedResource(ENDPOINT, names=names), None)
        return [r.encoded for r in cds], [r.encoded for r in eds]

    captured: dict[str, list[bytes]] = {}
    captured["cds"], captured["eds"] = generate(client_cluster_names(n_services, namespaces, None))
    one = f"outbound|9080||svc-1.bench-{1 % namespaces}.svc.cluster.local"
    captured["eds1"] = [e for e in captured["eds"] if one.encode() in e][:1]
    for k in range(namespaces):
        server.kube_client.create(sidecar(f"bench-{k}"))
    while len(ads.push_context.sidecars) < namespaces:
        await asyncio.sleep(0.1)
    captured["scoped_cds"], captured["scoped_eds"] = generate(client_cluster_names(n_services, namespaces, ns))
    out.write_bytes(pickle.dumps(captured))
    await server.stop()


# -- 2. the fan-out server -------------------------------------------------------------------------
@dataclass(eq=False)
class _Stream:
    number: int
    namespace: str = ""
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)


class FanoutServer:
    """Answers and pushes pre-serialized responses; records when each stream ACKs which version."""

    def __init__(self, entries: dict[str, list[bytes]]):
        self.entries = entries
        self.current: dict[str, bytes] = {}  # type URL → the response a new subscription gets
        self.streams: dict[int, _Stream] = {}
        self.acks: dict[tuple[str, str], dict[int, float]] = {}
        self._numbers = itertools.count(1)
        self._versions = itertools.count(1)
        self._slots = asyncio.Semaphore(PUSH_THROTTLE)
        self._server: grpc.aio.Server | None = None

    def bump(self, bodies: dict[str, list[bytes]]) -> dict[str, tuple[str, bytes]]:
        """New versions of ``bodies``: each response assembled once."""
        version = str(next(self._versions))
        return {t: (version, assemble_discovery_response(version, t, f"{version}-{t[-8:]}", e)) for t, e in bodies.items()}

    async def start(self) -> int:
        collect_garbage_less_often()  # as the real server does
        self._server = grpc.aio.server(options=[("grpc.server.max_pending_requests", 100_000),
                                                ("grpc.server.max_pending_requests_hard_limit", 100_000)])
        handler = grpc.stream_stream_rpc_method_handler(self._stream)
        self._server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            ADS_SERVICE, {"StreamAggregatedResources": handler})])
        port = self._server.add_insecure_port("127.0.0.1:0")
        initial = self.bump({CLUSTER: self.entries["cds"], ENDPOINT: self.entries["eds"]})
        self.current = {t: data for t, (_, data) in initial.items()}
        self.initial_version = initial[CLUSTER][0]
        await self._server.start()
        return port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(1)

    async def _stream(self, _requests, context) -> None:
        stream = _Stream(next(self._numbers))
        self.streams[stream.number] = stream
        writer = asyncio.create_task(self._write(stream, context))
        try:
            while True:
                raw = await context.read()
                if raw is grpc.aio.EOF:
                    break
                req = decode_discovery_request(raw)
                if req.node is not None and not stream.namespace:
                    stream.namespace = decode_node(req.node)[0].split("~")[2].split(".")[-1]
                if not req.response_nonce:  # a new subscription
                    stream.queue.put_nowait(self.current[req.type_url])
                else:
                    self.acks.setdefault((req.type_url, req.version_info), {}).setdefault(
                        stream.number, time.perf_counter())
        except (asyncio.CancelledError, grpc.RpcError):
            pass
        finally:
            writer.cancel()
            self.streams.pop(stream.number, None)

    async def _write(self, stream: _Stream, context) -> None:
        while True:
            data = await stream.queue.get()
            async with self._slots:
                await context.write(data)

    def push(self, bodies: dict[str, list[bytes]], members: set[int] | None = None) -> str:
        responses = self.bump(bodies)
        for stream in list(self.streams.values()):
            if members is None or stream.number in members:
                for _, data in responses.values():
                    stream.queue.put_nowait(data)
        return next(iter(responses.values()))[0]

    async def converge(self, types: tuple[str, ...], version: str, members: set[int], t0: float,
                       timeout: float = 120) -> list[float]:
        deadline = time.perf_counter() + timeout
        while True:
            got = [self.acks.get((t, version), {}) for t in types]
            if all(members <= set(g) for g in got):
                return [max(g[n] for g in got) - t0 for n in members]
            if time.perf_counter() > deadline:
                raise TimeoutError(f"fan-out version {version}: {[len(set(g) & members) for g in got]} of {len(members)}")
            await asyncio.sleep(0.005)


async def run_fanout(entries: dict[str, list[bytes]], n_services: int, n_clients: int, namespaces: int,
                     processes: int, rounds: int) -> dict:
    """The baseline's figures: storm, vs (CDS), eds (one CLA), dr (CDS+EDS), scoped (CDS to one namespace), rss."""
    server = FanoutServer(entries)
    port = await server.start()
    sizes = {k: sum(map(len, v)) for k, v in entries.items()}
    print(f"fan-out baseline: {n_clients} clients, pre-serialized responses captured from the pipeline: "
          f"CDS {sizes['cds'] / 1e3:.0f} kB ({len(entries['cds'])} clusters), EDS {sizes['eds'] / 1e3:.0f} kB, "
          f"one CLA {sizes['eds1']} B, scoped CDS {sizes['scoped_cds'] / 1e3:.1f} kB")
    clients = start_clients(port, n_clients, n_services, processes, namespaces)
    figures: dict = {}
    try:
        await asyncio.sleep(1.0)
        phase = Phase(clients)
        go(clients)
        while len(server.streams) < n_clients:
            await asyncio.sleep(0.05)
        everyone = set(server.streams)
        storm = await server.converge((CLUSTER, ENDPOINT), server.initial_version, everyone, phase.t0)
        figures["storm"] = max(storm)
        print(f"  connect storm: {figures['storm']:.2f} s; {cpu_note(phase.end())}")
        in_ns = {n for n, s in server.streams.items() if s.namespace == "bench-0"}
        steps = (("vs", {CLUSTER: entries["cds"]}, None), ("eds", {ENDPOINT: entries["eds1"]}, None),
                 ("dr", {CLUSTER: entries["cds"], ENDPOINT: entries["eds"]}, None),
                 ("scoped", {CLUSTER: entries["scoped_cds"]}, in_ns))
        for rnd in range(rounds):
            for name, bodies, members in steps:
                await asyncio.sleep(0.5)
                phase = Phase(clients)
                version = server.push(bodies, members)
                times = await server.converge(tuple(bodies), version, members or everyone, phase.t0)
                figures.setdefault(name, []).append(pct(times, 0.99))
                print(f"  round {rnd + 1} {name}: {len(members or everyone)} clients p99 {figures[name][-1]:.2f} s; "
                      f"{cpu_note(phase.end())}")
        for name, *_ in steps:
            print(f"  {name}: p99 median {statistics.median(figures[name]):.2f} s, worst {max(figures[name]):.2f} s")
        figures["rss"] = peak_rss_mb()
        print(f"  fan-out server peak RSS: {figures['rss']:.0f} MB")
    finally:
        end_clients(clients)
        await server.stop()
    return figures


if __name__ == "__main__" and sys.argv[1:2] == ["--capture"]:
    trace, services, ns, out = sys.argv[2:6]
    asyncio.run(capture(Path(trace), int(services), int(ns), Path(out)))
