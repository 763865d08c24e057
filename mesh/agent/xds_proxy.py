"""The agent's XDS proxy: Envoy's ADS streams, on a Unix socket, forwarded to istiod over gRPC.

Go: https://github.com/istio/istio/blob/1.19.0/pkg/istio-agent/xds_proxy.go and, for Delta,
https://github.com/istio/istio/blob/1.19.0/pkg/istio-agent/xds_proxy_delta.go.

Envoy's bootstrap points its ``xds-grpc`` cluster at ``./etc/istio/proxy/XDS``; the agent
listens there (``initDownstreamServer``, xds_proxy.go#L627-L641) and serves
``AggregatedDiscoveryService`` — both ``StreamAggregatedResources`` and
``DeltaAggregatedResources``, so Envoy's bootstrap may say ``GRPC`` or ``DELTA_GRPC``.

* **One upstream connection per Envoy stream.** Each time Envoy opens a stream the proxy dials
  istiod anew (``handleStream``, xds_proxy.go#L292-L352), so a fresh istiod connection never
  inherits messages meant for an old one, and sends the ``ClusterID`` header as pilot-agent does.
* **Termination propagates.** When istiod's side ends (istiod restarted, or refused) the proxy
  ends Envoy's stream with the same status; when Envoy's side ends, the upstream call is
  cancelled (``handleUpstream``, xds_proxy.go#L361-L426). Envoy then reconnects to the agent,
  which dials istiod again, and the full xDS sequence starts over (node, initial requests).
* **Messages pass through as bytes.** Neither direction is decoded: the proxy has nothing to
  change in them (see below), and re-encoding would cost what the istiod side saves by
  serializing once.

To istiod: plaintext by default (mesh's pods dial 15010); with ``credentials`` over TLS with the
workload certificate, as Istio's agent dials 15012, so istiod sees the workload's verified
identity (``mesh/xds/auth.py``) — what a VM needs to auto-register with the identity check on.

Simplifications, named: no interception of the types pilot-agent answers or rewrites itself
(NDS name tables for DNS capture, ECDS Wasm modules fetched by the agent, the
``istio.io/debug`` tap on 15004) and no health-check requests sent upstream; any number of
Envoy streams are forwarded (pilot-agent serves one Envoy).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import grpc

from mesh.agent.uds import UnixListenPath

log = logging.getLogger(__name__)

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
SOTW_METHOD = "StreamAggregatedResources"
DELTA_METHOD = "DeltaAggregatedResources"
SOCKET_PATH = Path("etc/istio/proxy/XDS")  # under the agent's workdir; Envoy's ./etc/istio/proxy/XDS
# Istio's agent accepts responses of any size from istiod (defaultClientMaxReceiveMessageSize);
# grpc's default of 4 MiB would cut a large mesh's CDS.
_UNLIMITED = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


class XdsProxy:
    """Forward Envoy's ADS streams on ``<workdir>/etc/istio/proxy/XDS`` to istiod at ``upstream``."""

    def __init__(self, workdir: str | Path, upstream: str, cluster_id: str = "Kubernetes",
                 credentials: Callable[[], grpc.ChannelCredentials] | None = None, server_name: str = ""):
        self.socket = UnixListenPath(Path(workdir) / SOCKET_PATH)
        self.upstream = upstream  # "host:port" of istiod's xDS port
        self.cluster_id = cluster_id
        # TLS to istiod's secure port with the workload certificate (read at every dial, so a
        # renewed one is used), istiod checked as ``server_name``; None: plaintext.
        self.credentials = credentials
        self.server_name = server_name
        self._server: grpc.aio.Server | None = None
        self.streams = {SOTW_METHOD: 0, DELTA_METHOD: 0}  # Envoy streams accepted, by method
        self.active = 0
        self.upstream_errors: list[str] = []  # how istiod's side of a stream ended, when not cleanly

    @property
    def socket_path(self) -> Path:
        return self.socket.path

    async def start(self) -> str:
        address = self.socket.prepare()
        self._server = grpc.aio.server(options=_UNLIMITED)
        self._server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(ADS_SERVICE, {
            method: grpc.stream_stream_rpc_method_handler(self._forwarder(method))  # bytes both ways
            for method in (SOTW_METHOD, DELTA_METHOD)})])
        if not self._server.add_insecure_port(address):
            raise OSError(f"cannot listen on {self.socket_path}")
        await self._server.start()
        self.socket.permit()
        log.info("XDS proxy on %s forwarding to %s", self.socket_path, self.upstream)
        return str(self.socket_path)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0.2)
            self._server = None
        self.socket.close()

    def _forwarder(self, method: str):
        async def handle(_requests, context: grpc.aio.ServicerContext) -> None:
            await self._forward(method, context)
        return handle

    async def _forward(self, method: str, downstream: grpc.aio.ServicerContext) -> None:
        self.streams[method] += 1
        self.active += 1
        if self.credentials is None:
            channel = grpc.aio.insecure_channel(self.upstream, options=_UNLIMITED)
        else:
            channel = grpc.aio.secure_channel(self.upstream, self.credentials(), options=[
                *_UNLIMITED, ("grpc.ssl_target_name_override", self.server_name)])
        upstream = channel.stream_stream(f"/{ADS_SERVICE}/{method}")(metadata=(("clusterid", self.cluster_id),))
        pump = asyncio.create_task(self._requests(downstream, upstream))
        try:
            async for response in upstream:  # istiod -> Envoy
                await downstream.write(response)
            # istiod closed the stream with OK: end Envoy's the same way, so it reconnects
        except grpc.aio.AioRpcError as err:
            self.upstream_errors.append(f"{err.code().name}: {err.details()}")
            log.info("XDS proxy: istiod ended a %s stream: %s %s", method, err.code().name, err.details())
            await downstream.abort(err.code(), f"upstream {self.upstream}: {err.details()}")
        finally:
            self.active -= 1
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.RpcError, grpc.aio.AioRpcError):
                await pump
            upstream.cancel()
            await channel.close()

    @staticmethod
    async def _requests(downstream: grpc.aio.ServicerContext, upstream) -> None:
        """Envoy -> istiod until Envoy half-closes; a failed read ends the upstream call."""
        try:
            while (request := await downstream.read()) is not grpc.aio.EOF:
                await upstream.write(request)
            await upstream.done_writing()
        except (grpc.RpcError, asyncio.InvalidStateError):
            upstream.cancel()
