"""ADS: the gRPC server Envoy connects to, State-of-the-World, over ``grpc.aio``.

Go: ``StreamAggregatedResources`` / ``Stream``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/ads.go#L236-L349, ``processRequest``
(ads.go#L190-L234), ``initConnection`` (ads.go#L519-L562), ``pushConnection`` (ads.go#L732-L764)
and ``AdsPushAll`` / ``startPush`` (ads.go#L840-L872).

Why one module of about 600 lines (a sixth of it this docstring): it mirrors ``ads.go`` (1009
lines at 1.19.0), the stream loop and the push fan-out that share one connection table; what can
stand alone already does (``connection.py``, ``delta.py``, ``proxy_dependencies.py``, ``types.py``).

One stream per Envoy. Everything that happens on a stream — a request arriving, a push to
deliver — goes through the connection's queue and is handled one at a time, like the Go
``select`` over ``reqChannel`` and ``pushChannel``: a push never interleaves with the answer
to a request, so versions and nonces stay consistent.

A push (from the debouncer, through ``DiscoveryServer.push_handlers``) first builds a new
PushContext when it is full, then queues itself on every connection — at most one waiting push
per connection, later ones merged into it (``PushQueue``,
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/pushqueue.go#L50-L74); each connection
runs the generators in push order (CDS, EDS, LDS, RDS) for the types its Envoy watches.

Delta xDS (``DeltaAggregatedResources``) is served by the same server: ``mesh.xds.delta`` handles
its requests and what it sends; streams (``serve_stream``), fairness, the push queue and
``generate`` are shared.

A proxy whose agent has a workload certificate (node metadata ``MESH_WORKLOAD_CERT: SDS``)
can terminate mutual TLS on its inbound port, so endpoints of its pod change for every client
(``networking/endpoints.py``): its connecting and leaving each ask for a full push, and every
PushContext records the pod IPs of such proxies (``mtls_addresses``). mesh-specific: in Istio
the pod's ``security.istio.io/tlsMode`` label alone says a sidecar is there; here an injected
pod may have no Envoy running.

A VM's proxy (node metadata ``AUTO_REGISTER_GROUP`` or ``WORKLOAD_ENTRY``) is handed to the
DiscoveryServer's WorkloadEntry controller (``mesh.autoregistration``) before anything else is
computed about it, as ``initializeProxy`` does (ads.go#L634-L652), and again when its stream
closes (``closeConnection``, ads.go#L564-L576); a refusal ends the stream with the controller's status.

Per proxy, a full push first refreshes the proxy's state (``computeProxyState``: its service
instances and SidecarScope), then asks ``ProxyNeedsPush`` whether the changed configs concern it
(``mesh/xds/proxy_dependencies.py``); the generators read the PushContext through the proxy's
scope (``mesh/networking/sidecar.py``).

Fairness: one slow or hostile client only delays itself.

* Pushes take a slot of the push throttle (``PILOT_PUSH_THROTTLE`` = 100,
  https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/discovery.go#L463-L507); answers to a
  proxy's own requests do not, as in istiod. A push whose write has not completed within
  ``STALL_AFTER`` (a peer that does not open its HTTP/2 window) gives its slot back, so 100
  stuck streams cannot stop pushes to everyone else.
* Every write has a deadline, istiod's ``PILOT_XDS_SEND_TIMEOUT``
  (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/grpc/grpc.go#L36-L56): past it the stream
  ends with DEADLINE_EXCEEDED ("timeout sending"). istiod's default is 0 (no deadline); mesh's
  is 10 s, so a stuck stream cannot hold its response in memory for ever.
* Requests waiting for their stream's worker are bounded (``MAX_QUEUED_REQUESTS``,
  ``MAX_QUEUED_BYTES``): a client that keeps sending while not reading is cut off with
  RESOURCE_EXHAUSTED. istiod instead stops reading (its request channel holds one message) and
  lets HTTP/2 flow control push back; ending the stream frees the memory at once.
* Requests for type URLs mesh has no generator for are dropped before they are recorded, and
  metric labels are only ever the known types (``monitoring.py``), so made-up type URLs create
  no state; client-supplied text is clipped in logs (``mesh/util/clip.py``).
* Wrongly typed node metadata ends the stream with INVALID_ARGUMENT, as ``initProxyMetadata``
  does (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/ads.go#L586-L594).
* The listening port is exclusive (``grpc.so_reuseport`` off): a second server on the same port
  fails to start with :class:`PortInUse` instead of silently taking half the new proxies.

A stream that arrived on the TLS port carries its peer's verified identities (``auth.py``): the
first request is refused with PERMISSION_DENIED unless one fits the proxy's namespace and
service account, and that one becomes the proxy's ``verified_identity``.

The connection lifecycle (notebook 18) has its own modules where it can: a new stream first waits
for the new-stream rate limit (``mesh/xds/ratelimit.py``, ads.go#L267-L270); a pod's label or IP
change pushes its proxy alone (``proxy_update``, ``ProxyUpdate`` ads.go#L800-L827, whose
``computeProxyState`` re-reads its labels: ``proxy_dependencies.py``); debug clients are served
``istio.io/debug/syncz``, ``istio.io/connect`` and the connect, disconnect and NACK events by
``mesh/xds/statusgen.py``.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping

import grpc

from mesh.autoregistration.controller import RegistrationError
from mesh.model.config import ConfigStore
from mesh.model.proxy import NodeIdError, parse_node_id
from mesh.model.push_request import PushRequest, TriggerReason
from mesh.model.service import ServiceDiscovery
from mesh.networking.push_context import PushContext
from mesh.networking.tls import has_workload_cert
from mesh.util.clip import clip
from mesh.util.net import PortInUse, host_port
from mesh.xds.auth import PEER_IDENTITIES, authenticated, check_connection_identity, identity_check_enabled
from mesh.xds.cache import XdsCache
from mesh.xds.connection import Connection, RequestKind
from mesh.xds.debounce import DebouncedPush
from mesh.xds.delta import DELTA_METHOD, DeltaAds
from mesh.xds.discovery import DiscoveryServer
from mesh.xds.fastpath import (
    RequestFields,
    assemble_discovery_response,
    collect_garbage_less_often,
    decode_discovery_request,
    decode_node,
    encode_resource_entry,
)
from mesh.xds.generator import Generator, ProxyState, scoped, updated_hostnames
from mesh.xds.monitoring import XdsMetrics
from mesh.xds.proxy_dependencies import compute_proxy_state, needs_push
from mesh.xds.statusgen import StatusGen, serves
from mesh.xds.typed_cache import TypedXdsCache
from mesh.xds.types import PUSH_ORDER, TYPES, short_name

log = logging.getLogger(__name__)

def export_defaults(mesh: dict) -> dict[str, tuple[str, ...]]:
    """MeshConfig's default exportTo lists (``initDefaultExportMaps``); unset ones stay ``*``."""
    names = {"service": "defaultServiceExportTo", "virtual_service": "defaultVirtualServiceExportTo",
             "destination_rule": "defaultDestinationRuleExportTo"}
    return {k: tuple(mesh[v]) for k, v in names.items() if mesh.get(v)}


ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"

PUSH_THROTTLE = int(os.environ.get("PILOT_PUSH_THROTTLE", "100"))  # pushes in flight at once
SEND_TIMEOUT = float(os.environ.get("PILOT_XDS_SEND_TIMEOUT", "10"))  # seconds; 0 = none (istiod's default)
STALL_AFTER = 0.1  # seconds a push's write may take before it gives its throttle slot back
MAX_QUEUED_REQUESTS = 100  # requests read but not yet handled, per stream
MAX_QUEUED_BYTES = 4 << 20  # their encoded size, per stream


def exclusive_port_options() -> list[tuple[str, int]]:
    """gRPC server options that make the listening port exclusive: gRPC core sets SO_REUSEPORT by
    default, and a second server on the same port would then silently share the new connections."""
    return [("grpc.so_reuseport", 0)]


def add_port(server: grpc.aio.Server, address: str, what: str, credentials=None) -> int:
    """``add_insecure_port`` / ``add_secure_port``, with a clear error when the port is taken."""
    try:
        if credentials is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, credentials)
    except RuntimeError as err:  # grpc: "Failed to bind to address ..."
        raise PortInUse(f"cannot listen on {address} for {what}: address already in use or not available "
                        f"(is another mesh server running?)") from err


class _StreamEnded(Exception):
    """Raised in a stream's worker once the stream has been ended (``Connection.end``)."""


class _ThrottleSlot:
    """One push's slot of the push throttle, given back once (when the push ends or stalls)."""

    def __init__(self, semaphore: asyncio.Semaphore):
        self._semaphore = semaphore
        self.held = False

    async def __aenter__(self) -> _ThrottleSlot:
        await self._semaphore.acquire()
        self.held = True
        return self

    def release(self) -> None:
        if self.held:
            self.held = False
            self._semaphore.release()

    async def __aexit__(self, *exc) -> None:
        self.release()


def default_generators() -> dict[str, Generator]:
    """The type URL → generator map of ``InitGenerators``: one of each row's ``generator`` class
    (``mesh.xds.types.TYPES``, the sidecar subset mesh implements)."""
    out = {}
    for t in TYPES:
        module, cls = t.generator.split(":")
        out[t.url] = getattr(importlib.import_module(module), cls)()
    return out


class AdsServer:
    """Serve ADS for ``discovery``'s pushes from ``registry`` and ``config_store``."""

    def __init__(self, discovery: DiscoveryServer, generators: Mapping[str, Generator] | None,
                 registry: ServiceDiscovery, config_store: ConfigStore | None = None,
                 domain: str = "cluster.local", is_ready: Callable[[], bool] | None = None,
                 metrics: XdsMetrics | None = None):
        self.discovery = discovery
        self.generators = dict(generators or default_generators())
        self.registry = registry
        self.config_store = config_store
        self.domain = domain
        self.is_ready = is_ready or (lambda: True)
        self.cache = XdsCache()
        self.typed_cache = TypedXdsCache()  # built clusters and endpoints, kept across pushes
        self.metrics = metrics or XdsMetrics()
        self.connections: dict[int, Connection] = {}
        self.trust_domain: Callable[[], str] = lambda: "cluster.local"  # the server sets MeshConfig's
        self.outbound_traffic_mode: Callable[[], str] = lambda: "ALLOW_ANY"  # and outboundTrafficPolicy.mode
        self.mesh_config: Callable[[], dict] = dict  # and the rest of MeshConfig (rootNamespace, default exportTo)
        # Proxies a full or EDS push left alone (ProxyNeedsPush said no), and the last reasons why.
        self.skipped_pushes = 0
        self.last_skips: dict[str, str] = {}
        self.pushes_by_type: Counter = Counter()  # pilot_xds_pushes{type}
        self.rejects: Counter = Counter()  # pilot_total_xds_rejects, by type (known types only)
        self.generate_errors: Counter = Counter()
        self.closed_by_server: Counter = Counter()  # streams we ended, by gRPC status name
        # Called as f(connection, type_url, version, nonce) on every ACK: convergence metrics, benchmarks.
        self.ack_listeners: list[Callable[[Connection, str, str, str], object]] = []
        self._versions = itertools.count(1)
        self._nonces = itertools.count(1)
        self._push_slots: asyncio.Semaphore | None = None  # the push throttle, made on the serving loop
        self._push_context: PushContext | None = None
        self._server: grpc.aio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.port: int | None = None
        self.delta = DeltaAds(self)  # the Delta xDS half (mesh.xds.delta)
        self.status = StatusGen(self)  # debug and event types for debug clients (mesh.xds.statusgen)
        discovery.push_handlers.append(self.on_debounced_push)
        discovery.proxy_update_handlers.append(self.proxy_update)

    # -- push context -------------------------------------------------------------------------
    @property
    def push_context(self) -> PushContext:
        if self._push_context is None:
            self._push_context = self._build_push_context()
        return self._push_context

    def _build_push_context(self, request: PushRequest | None = None) -> PushContext:
        push = self._init_push_context(request)
        push.xds_cache, push.cache_token = self.typed_cache, self.discovery.clock.now()
        return push

    def _init_push_context(self, request: PushRequest | None) -> PushContext:
        """``InitContext``: with the push's changed configs, indexes they cannot affect are taken
        from the previous PushContext (``updateContext``)."""
        t0 = time.perf_counter()
        mesh = self.mesh_config()
        push = PushContext.build(self.registry, self.config_store, version=str(next(self._versions)),
                                 domain=self.domain, mtls_addresses=self._mtls_addresses(),
                                 trust_domain=self.trust_domain(), uncaptured_addresses=self._uncaptured_addresses(),
                                 outbound_traffic_mode=self.outbound_traffic_mode(),
                                 previous=self._push_context,
                                 configs_updated=request.configs_updated if request is not None else None,
                                 root_namespace=mesh.get("rootNamespace") or "istio-system",
                                 export_defaults=export_defaults(mesh))
        self.metrics.on_push_context(time.perf_counter() - t0)
        return push

    def _mtls_addresses(self) -> frozenset[str]:
        """Pod IPs of connected sidecars that have a workload certificate: they can terminate mTLS."""
        return frozenset(ip for con in list(self.connections.values())
                         if con.state is not None and has_workload_cert(con.state.proxy.metadata)
                         for ip in con.state.proxy.ip_addresses)

    def _uncaptured_addresses(self) -> frozenset[str]:
        """Pod IPs of connected sidecars in INTERCEPTION_MODE=NONE (``networking/endpoints.py``)."""
        return frozenset(ip for con in list(self.connections.values())
                         if con.state is not None and not con.state.proxy.captured
                         for ip in con.state.proxy.ip_addresses)

    def _mtls_sidecar_changed(self, con: Connection) -> None:
        """A sidecar that can terminate mTLS came or went: endpoints of its pod change for every
        client (``networking/endpoints.py``), so ask for a full push."""
        if con.state is not None and has_workload_cert(con.state.proxy.metadata):
            self.discovery.config_update(PushRequest.of(TriggerReason.PROXY))

    # -- serving ------------------------------------------------------------------------------
    def rpc_handlers(self, peer_identities: Callable | None = None) -> list:
        """The ADS service as gRPC generic handlers, for any ``grpc.aio`` server (istiod registers
        the same service on its plaintext and its TLS gRPC servers: ``XDSServer.Register``).
        ``peer_identities(context)``: the TLS server's verified peer identities (``auth.py``)."""
        sotw, delta = self._stream, self.delta.serve
        if peer_identities is not None:
            sotw, delta = authenticated(sotw, peer_identities), authenticated(delta, peer_identities)
        return [grpc.method_handlers_generic_handler(ADS_SERVICE, {  # raw bytes both ways
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(sotw),
            DELTA_METHOD: grpc.stream_stream_rpc_method_handler(delta)})]

    def _bind_loop(self) -> None:
        """Tie pushes to the event loop that serves the streams (the first one to start)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
            # Pushes in flight at once, across all streams: each holds a whole response in gRPC's
            # buffers until the peer reads it, so a push to thousands of proxies must not start
            # them all together.
            self._push_slots = asyncio.Semaphore(PUSH_THROTTLE)
        if self.on_debounced_push not in self.discovery.push_handlers:  # started again after stop()
            self.discovery.push_handlers.append(self.on_debounced_push)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen for Envoys; returns the bound port."""
        self._bind_loop()
        # A connect storm (every proxy reconnecting after an istiod restart) queues thousands of
        # new streams at once; gRPC core's default cap on requests waiting for the application
        # (1000 soft, 3000 hard) would fail some of them with INTERNAL.
        collect_garbage_less_often()  # fastpath.py, 8.
        self._server = grpc.aio.server(options=[("grpc.server.max_pending_requests", 100_000),
                                                ("grpc.server.max_pending_requests_hard_limit", 100_000),
                                                *exclusive_port_options()])
        self._server.add_generic_rpc_handlers(self.rpc_handlers())
        try:
            self.port = add_port(self._server, host_port(host, port), "xDS")
        except PortInUse:
            server, self._server = self._server, None
            await server.stop(None)  # not left for the garbage collector, after the loop has gone
            raise
        await self._server.start()
        log.info("ADS listening on %s:%d", host, self.port)
        return self.port

    async def stop(self, grace: float = 0.5) -> None:
        """Close every stream (Envoy will reconnect elsewhere or later) and stop listening."""
        if self.on_debounced_push in self.discovery.push_handlers:
            self.discovery.push_handlers.remove(self.on_debounced_push)
        for con in list(self.connections.values()):
            con.end()
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    async def _stream(self, _requests, context: grpc.aio.ServicerContext) -> None:
        self._bind_loop()  # a stream may arrive through another server (the TLS one) first
        if not self.is_ready():
            await context.abort(grpc.StatusCode.UNAVAILABLE, "server is not ready to serve discovery information")
        await self.serve_stream(context, Connection(peer=context.peer()), decode_discovery_request,
                                self._on_request, "DiscoveryRequest")

    async def serve_stream(self, context, con: Connection, decode, on_request, what: str) -> None:
        """One stream of either protocol: its requests (``decode``d, answered by ``on_request``)
        and the pushes queued for it, handled one at a time."""
        exceeded = await self.discovery.request_rate_limit.wait()  # WaitForRequestLimit (ratelimit.py)
        if exceeded:
            log.warning("ADS: %s exceeded rate limit: %s", clip(context.peer()), exceeded)
            self.closed_by_server[grpc.StatusCode.RESOURCE_EXHAUSTED.name] += 1
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"request rate limit exceeded: {exceeded}")
        con.identities = PEER_IDENTITIES.get()  # authenticate: set only on the TLS port
        reader = asyncio.create_task(self._read(context, con, decode, what))
        worker = asyncio.create_task(self._work(con, context, on_request))
        ended = asyncio.create_task(con.ended.wait())
        self.connections[con.number] = con
        self.metrics.on_connections(len(self.connections))
        try:
            # The worker handles the queue; anyone may end the stream (the reader on a flood, a
            # write past its deadline) by setting con.ended, even while the worker is stuck.
            await asyncio.wait({worker, ended}, return_when=asyncio.FIRST_COMPLETED)
            if worker.done() and not worker.cancelled() and worker.exception() is not None:
                raise worker.exception()
            if con.close_status is not None:
                code, message = con.close_status
                self.closed_by_server[code.name] += 1
                log.info("ADS: closing %s: %s: %s", con.id, code.name, clip(message))
                if con.writing:
                    # gRPC cannot send a status while a message is still waiting for the peer's
                    # window: cancel the call instead (the peer sees the stream reset), which
                    # frees its buffers just the same.
                    raise asyncio.CancelledError
                await context.abort(code, message)
        finally:
            for task in (reader, worker, ended):
                task.cancel()
            self.connections.pop(con.number, None)
            self.status.on_disconnect(con)
            self._mtls_sidecar_changed(con)
            self._unregister_workload(con)
            self.metrics.on_connections(len(self.connections))
            log.info("ADS: connection %s closed", con.id)

    async def _work(self, con: Connection, context: grpc.aio.ServicerContext, on_request) -> None:
        """One item of the connection's queue at a time (the Go ``select`` loop of ``Stream``)."""
        try:
            await self._work_queue(con, context, on_request)
        except _StreamEnded:
            pass

    async def _work_queue(self, con: Connection, context: grpc.aio.ServicerContext, on_request) -> None:
        while True:
            kind, item = await con.queue.get()
            if kind == "request":
                # Let go of the request before waiting for the next one: an EDS request lists
                # every cluster, and thousands of idle streams would each keep their last one.
                (req, size), item = item, None
                con.dequeued(size)
                await on_request(con, req, context)
                del req
            elif kind == "event":  # a StatusGen event for a debug client watching its type
                await self.write(con, context, item, None)
            elif kind == "push":
                request, con.pending_push = con.pending_push, None
                async with _ThrottleSlot(self._push_slots) as slot:
                    await self._push_connection(con, request, context, slot)
            else:  # "eof" (Envoy went away) or "close" (we are stopping)
                con.end()
                return

    async def _read(self, context: grpc.aio.ServicerContext, con: Connection, decode, what: str) -> None:
        # context.read() rather than the request iterator: the last message is not kept alive.
        try:
            while True:
                raw = await context.read()
                if raw is grpc.aio.EOF:
                    break
                if not con.queued(len(raw), MAX_QUEUED_REQUESTS, MAX_QUEUED_BYTES):
                    con.end(grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"too many requests waiting (more than {MAX_QUEUED_REQUESTS} or "
                            f"{MAX_QUEUED_BYTES} bytes): the client sends faster than it reads")
                    return
                con.queue.put_nowait(("request", (decode(raw), len(raw))))
                del raw  # not kept alive while waiting for the next message (tens of KB for EDS)
        except (asyncio.CancelledError, grpc.RpcError, grpc.aio.AioRpcError):
            pass
        except Exception as err:  # a malformed message: end this stream, not the server
            con.end(grpc.StatusCode.INVALID_ARGUMENT, f"bad {what}: {clip(str(err))}")
            return
        con.queue.put_nowait(("eof", None))

    # -- requests -----------------------------------------------------------------------------
    async def _on_request(self, con: Connection, req: RequestFields, context) -> None:
        if con.state is None:
            error = self._init_connection(con, req)
            if error:
                self.refuse(con, error)
                return
        type_url = req.type_url
        if serves(con.state.proxy.metadata, type_url, self.generators):  # findGenerator → StatusGen
            await self.status.on_request(con, req, context)
            return
        if type_url not in self.generators:
            # istiod keeps a watch even for types it cannot generate; mesh drops the request, so
            # made-up type URLs (any number of them, of any length) leave no state behind.
            log.warning("ADS: no generator for %s requested by %s", clip(type_url), con.id)
            return
        error = (req.error_message or f"error code {req.error_code}") if req.error_code else ""
        kind = con.classify(type_url, req.response_nonce, req.resource_names, error)
        con.record(kind.value, type_url, clip(req.version_info), clip(req.response_nonce), clip(error))
        if kind == RequestKind.NACK:
            self.rejects[short_name(type_url)] += 1
            self.metrics.on_reject(type_url)
            log.warning("ADS: %s NACK from %s (nonce %s): %s", short_name(type_url), con.id,
                        clip(req.response_nonce), clip(error))
            self.status.on_nack(con, type_url, req.response_nonce, req.resource_names, req.error_code,
                                req.error_message)
            return
        if kind in (RequestKind.ACK, RequestKind.ACK_NEW_NAMES):
            self.on_ack(con, type_url, req.version_info, req.response_nonce)
        if kind in (RequestKind.INITIAL, RequestKind.ACK_NEW_NAMES):
            await self._send(con, type_url, None, context, None)

    def on_ack(self, con: Connection, type_url: str, version: str, nonce: str) -> None:
        """An ACK on a stream of either protocol: convergence, then the listeners."""
        if con.pushed is not None and con.synced():  # a push has fully reached this proxy
            self.metrics.on_converged(con.pushed, self.discovery.clock.now())
            con.pushed = None
        for listener in self.ack_listeners:
            listener(con, type_url, version, nonce)

    @staticmethod
    def refuse(con: Connection, error: str | tuple) -> None:
        """End a stream whose first request failed: a bad node (INVALID_ARGUMENT) or a
        (status, message) from the WorkloadEntry controller."""
        con.end(*error) if isinstance(error, tuple) else con.end(grpc.StatusCode.INVALID_ARGUMENT, error)

    def _register_workload(self, con: Connection) -> tuple | None:
        """``initializeProxy``'s first step: a VM's proxy may get (or take over) its WorkloadEntry
        (``mesh.autoregistration``); a refusal ends the stream with the controller's status."""
        controller = self.discovery.workload_entry_controller
        if controller is None:
            return None
        con.connected_at = controller.now()
        try:
            controller.register_workload(con.state.proxy, con.connected_at)
        except RegistrationError as err:
            return (grpc.StatusCode[err.code], str(err))
        return None

    def _unregister_workload(self, con: Connection) -> None:
        """``closeConnection``'s last step: the controller marks the entry disconnected."""
        controller = self.discovery.workload_entry_controller
        if controller is not None and con.state is not None and con.connected_at is not None:
            controller.queue_unregister_workload(con.state.proxy, con.connected_at)

    def _init_connection(self, con: Connection, req: RequestFields) -> str | tuple:
        """Who is this? The first request carries the node (``initConnection``)."""
        try:
            node_id, metadata = decode_node(req.node) if req.node is not None else ("", {})
        except Exception as err:  # protobuf's own refusals (bad wire data, NaN/Infinity in a Struct)
            return f"node: cannot decode: {clip(str(err))}"
        if not node_id:
            return "the first DiscoveryRequest on a stream must carry node.id"
        try:
            proxy = parse_node_id(node_id, metadata)
        except NodeIdError as err:
            return clip(str(err), 1000)
        if con.identities and identity_check_enabled():  # authorize (auth.go#L42-L57)
            try:
                proxy.verified_identity = check_connection_identity(proxy, con.identities)
            except ValueError as err:
                log.warning("Unauthorized XDS: %s with identity %s: %s", con.peer, list(con.identities), err)
                return (grpc.StatusCode.PERMISSION_DENIED, f"authorization failed: {err}")
        con.state, con.node = ProxyState(proxy), req.node
        refused = self._register_workload(con)
        if refused:
            return refused
        compute_proxy_state(con.state, self.push_context, None)
        log.info("ADS: new connection %s from %s", con.id, con.peer)
        self.status.on_connect(con)
        self._mtls_sidecar_changed(con)
        return ""

    # -- pushes -------------------------------------------------------------------------------
    def on_debounced_push(self, push: DebouncedPush) -> None:
        self.metrics.on_debounced(push)
        self.push(push.request)

    def push(self, request: PushRequest) -> None:
        """Start a push to every connected proxy (``AdsPushAll``). Safe to call from any thread."""
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self.push, request)
            return
        now = self.discovery.clock.now()
        if request.full or self._push_context is None:
            self._push_context = self._build_push_context(request)  # a full push sees a fresh snapshot
        else:  # an incremental push keeps the snapshot but not the changed services' endpoints
            self._push_context.forget_endpoints(updated_hostnames(request))
        self.drop_cache_for_request(request, now)
        self._push_context.xds_cache, self._push_context.cache_token = self.typed_cache, now
        for con in list(self.connections.values()):
            self._enqueue(con, request)

    @staticmethod
    def _enqueue(con: Connection, request: PushRequest) -> None:
        """One pending push per proxy (the Go PushQueue): a proxy still busy with an earlier push
        gets the new request merged into its waiting one, not queued behind it."""
        if con.pending_push is None:
            con.pending_push = request
            con.queue.put_nowait(("push", None))
        else:
            con.pending_push = con.pending_push.merge(request)

    def proxy_update(self, ip: str) -> None:
        """``ProxyUpdate`` (ads.go#L800-L827): a full push, reason ``proxy``, to the one proxy whose
        first IP this is, from the current PushContext and not debounced; its ``computeProxyState``
        re-reads its labels. A pod whose Envoy is not connected here is nobody's business. (istiod
        also matches the proxy's cluster ID; mesh has one cluster.)"""
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self.proxy_update, ip)
            return
        con = next((c for c in list(self.connections.values())
                    if c.state is not None and c.state.proxy.ip_addresses[0] == ip), None)
        if con is not None:
            self._enqueue(con, PushRequest.of(TriggerReason.PROXY, start=self.discovery.clock.now()))

    async def _push_connection(self, con: Connection, request: PushRequest, context,
                               slot: _ThrottleSlot | None = None) -> None:
        if con.state is None:
            return  # not initialized yet: it will get everything when it asks
        if request.full:
            compute_proxy_state(con.state, self.push_context, request)
        if not self.proxy_needs_push(con.state, request):
            return
        con.pushed = request if con.pushed is None else con.pushed.merge(request)
        send = self._send if con.delta is None else self.delta.send
        for type_url in PUSH_ORDER:
            if type_url in con.watched:
                await send(con, type_url, request, context, slot)
        if con.delta is None and any(t not in self.generators for t in con.watched):  # a debug client's watches
            await self.status.push(con, context, slot)
        con.push_version = self.push_context.version
        if con.synced():
            con.pushed = None  # nothing was sent: nothing to converge on

    def drop_cache_for_request(self, request: PushRequest, now: float) -> None:
        """``dropCacheForRequest``: everything when the push does not say what changed, else the
        entries that depend on what did."""
        if request.configs_updated:
            self.typed_cache.clear(request.configs_updated, now)
        else:
            self.typed_cache.clear_all(now)
        self.metrics.on_cache(self.typed_cache)

    def proxy_needs_push(self, state: ProxyState, request: PushRequest) -> bool:
        """``ProxyNeedsPush`` (``mesh.xds.proxy_dependencies``), counting and remembering skips."""
        push, why = needs_push(state, request)
        if not push:
            self.skipped_pushes += 1
            self.last_skips[state.proxy.id] = why
            log.debug("ADS: skipping push to %s: %s", state.proxy.id, why)
        return push

    def generate(self, state: ProxyState, type_url: str, watched, request: PushRequest | None) -> list | None:
        """Generate and encode one type for one connection: the generator's resources, each
        serialized through the XdsCache and wrapped as an ``Any`` entry once per push (a resource
        shared by many proxies is encoded once). None: no generator, or the push does not concern
        this type. ``_send`` and the push recorder (``mesh.xds.push_recorder``) both send from here."""
        generator = self.generators.get(type_url)
        if generator is None:
            return None
        resources = generator.generate(state, scoped(self.push_context, state), watched, request)
        if resources:  # a list shared by many proxies is looked at once per push, not once per proxy
            self.push_context.memo_by_identity("encoded", resources, lambda: self._encode(type_url, resources))
        return resources

    def _encode(self, type_url: str, resources: list) -> None:
        for r in resources:
            if r.encoded is None:
                r.encoded = encode_resource_entry(type_url, self.cache.serialize(type_url, r.body))

    async def _send(self, con: Connection, type_url: str, request: PushRequest | None, context,
                    slot: _ThrottleSlot | None) -> None:
        if type_url not in self.generators:
            log.warning("ADS: no generator for %s requested by %s", clip(type_url), con.id)
            return
        watched = con.watched[type_url]
        push = self.push_context
        try:
            resources = self.generate(con.state, type_url, watched, request)
            if resources is None:
                return  # this push does not concern this type
            # Proxies given the very same resources in this push share one response — its bytes
            # and its nonce (a nonce only needs to be unique per stream and type). Thousands of
            # sidecars then cost one assembled message, not thousands of copies of it. The memo
            # keeps the resources alive, so the ids in its key cannot be reused by other objects.
            # Found by the list's identity first: generators hand alike proxies the very same list.
            _, names, nonce, data = push.memo_by_identity(
                ("response-of", type_url), resources,
                lambda: push.memo(("response", type_url, tuple(map(id, resources))),
                                  lambda: self._assemble(push.version, type_url, resources)))
        except Exception:  # a generator bug must not cut the stream: Envoy keeps its last config
            self.generate_errors[short_name(type_url)] += 1
            log.exception("ADS: generating %s for %s failed", short_name(type_url), con.id)
            return
        watched.nonce_sent, watched.version_sent = nonce, push.version
        con.push_version = push.version
        watched.sent_names = names
        self.pushes_by_type[short_name(type_url)] += 1
        self.metrics.on_send(type_url, "sotw", len(data))
        con.record("send", type_url, push.version, nonce, f"{len(resources)} resources, {len(data)} bytes")
        await self.write(con, context, data, slot)

    async def write(self, con: Connection, context, data: bytes, slot: _ThrottleSlot | None) -> None:
        """``conn.send``: write one response within SEND_TIMEOUT; a push that stalls gives its
        throttle slot back first, so other proxies' pushes go on. Both deadlines are timers on the
        loop (two per write, cancelled when it completes), not waits of their own: a push writes
        to thousands of streams."""
        loop = asyncio.get_running_loop()
        write = asyncio.ensure_future(context.write(data))
        write.add_done_callback(_retrieve)
        con.writing = True
        stall = loop.call_later(STALL_AFTER, slot.release) if slot is not None and slot.held else None
        timed_out = False

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            write.cancel()

        deadline = loop.call_later(SEND_TIMEOUT, expire) if SEND_TIMEOUT > 0 else None
        try:
            await write
            con.writing = False
        except asyncio.CancelledError:
            if not timed_out:
                raise  # this stream's worker is being cancelled
            log.info("ADS: timeout writing %s", con.id)
            con.end(grpc.StatusCode.DEADLINE_EXCEEDED, "timeout sending")
            raise _StreamEnded from None
        finally:
            for timer in (stall, deadline):
                if timer is not None:
                    timer.cancel()
            if not write.done():
                write.cancel()

    def new_nonce(self, version: str) -> str:
        """A nonce unique on this server (it only needs to be unique per stream and type)."""
        return f"{version}-{next(self._nonces)}"

    def _assemble(self, version: str, type_url: str, resources: list) -> tuple:
        nonce = self.new_nonce(version)
        data = assemble_discovery_response(version, type_url, nonce, [r.encoded for r in resources])
        return resources, [r.name for r in resources], nonce, data

    # -- introspection ------------------------------------------------------------------------
    def connection(self, proxy_id: str) -> Connection | None:
        """The live connection of ``<pod>.<ns>``, newest first."""
        for con in sorted(self.connections.values(), key=lambda c: -c.number):
            if con.state is not None and con.state.proxy.id == proxy_id:
                return con
        return None


def _retrieve(task: asyncio.Future) -> None:
    """A write abandoned with its stream fails later inside gRPC; that is expected, not worth a
    "Task exception was never retrieved" report."""
    if not task.cancelled():
        task.exception()
