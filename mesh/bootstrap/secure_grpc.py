"""The secure gRPC server of port 15012: TLS with istiod's certificate, optional client certificates
verified against the mesh roots, the CA service now and the ADS service later.

Go: ``initSecureDiscoveryService``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L724-L780 builds a
``grpc.Server`` whose TLS config asks for a client certificate and verifies it *if given*
(``tls.VerifyClientCertIfGiven``): a workload renewing its certificate presents the old one, a
new workload has none yet and authenticates with its token instead. ``Start`` opens the
listener last, once caches have synced
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L432-L445).

Why a TLS front: Python's gRPC can either *require* a client certificate or *not ask* for one —
never "ask, and verify if given". So mesh terminates TLS itself with ``ssl`` (which can:
``CERT_OPTIONAL``), and pipes the decrypted HTTP/2 bytes to a plaintext ``grpc.aio`` server on
a loopback port. For each connection the front remembers the verified peer certificate under
the address its backend connection comes from, which is exactly what the gRPC servicer sees as
``context.peer()``; ``peer_certificate(context)`` looks it up. That is the SPIFFE identity of
the peer attached to the connection. The backend port carries no identity: a caller reaching
it directly is simply a caller without a certificate (it still needs a token for the CA).

Services are registered before ``start`` through the same two calls generated code makes on a
``grpc.aio.Server`` (``add_generic_rpc_handlers``, ``add_registered_method_handlers``); the real
server is created inside the running event loop at start, as grpc.aio requires.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

import grpc

from mesh.security.tls import PeerCertificate

log = logging.getLogger(__name__)

BACKEND_HOST = "127.0.0.1"
_CHUNK = 64 * 1024


class SecureGrpcServer:
    def __init__(self, ssl_context: Callable[[], ssl.SSLContext]):
        self.ssl_context = ssl_context  # built at start, so a rotated istiod cert is picked up on restart
        self._generic: list = []
        self._registered: list[tuple[str, dict]] = []
        self._server: grpc.aio.Server | None = None
        self._front: asyncio.base_events.Server | None = None
        self._peers: dict[str, PeerCertificate | None] = {}
        self._connections: dict[asyncio.Task, list[asyncio.StreamWriter]] = {}  # open pipes, for stop()
        self.port: int | None = None
        self.connections_total = 0
        self.handshake_failures = 0

    # -- registration, as on a grpc.aio.Server ---------------------------------------------------
    def add_generic_rpc_handlers(self, handlers) -> None:
        self._check_not_started()
        self._generic.extend(handlers)

    def add_registered_method_handlers(self, service_name: str, method_handlers: dict) -> None:
        self._check_not_started()
        self._registered.append((service_name, method_handlers))

    def _check_not_started(self) -> None:
        if self._server is not None:
            raise RuntimeError("the secure gRPC server has started: register services before Server.start")

    @property
    def services(self) -> list[str]:
        names = [h.service_name() for h in self._generic if hasattr(h, "service_name")]
        return sorted(set(names))

    # -- the peer of a call -------------------------------------------------------------------------
    def peer_certificate(self, context) -> PeerCertificate | None:
        """The verified client certificate of the connection carrying this call, if any."""
        return self._peers.get(context.peer())

    def peer_identities(self, context) -> tuple[str, ...]:
        peer = self.peer_certificate(context)
        return peer.identities if peer else ()

    # -- serving ----------------------------------------------------------------------------------
    async def start(self, host: str, port: int) -> int:
        self._server = grpc.aio.server()
        if self._generic:
            self._server.add_generic_rpc_handlers(self._generic)
        for name, handlers in self._registered:
            self._server.add_registered_method_handlers(name, handlers)
        backend_port = self._server.add_insecure_port(f"{BACKEND_HOST}:0")
        await self._server.start()

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            self._connections[task] = [writer]
            try:
                await self._pipe_to_backend(reader, writer, backend_port)
            except Exception:  # a handler that raises would only be logged by asyncio, noisily
                log.exception("secure gRPC: connection failed")
            finally:
                self._connections.pop(task, None)

        self._front = await asyncio.start_server(on_connection, host, port, ssl=self.ssl_context(),
                                                 ssl_handshake_timeout=10)
        self.port = self._front.sockets[0].getsockname()[1]
        log.info("secure gRPC (TLS, optional client certs) on %s:%d serving %s", host, self.port,
                 ", ".join(self.services) or "nothing")
        return self.port

    async def _pipe_to_backend(self, reader, writer, backend_port: int) -> None:
        self.connections_total += 1
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        peer = PeerCertificate.from_der(der) if der else None
        try:
            b_reader, b_writer = await asyncio.open_connection(BACKEND_HOST, backend_port)
        except OSError as err:
            log.warning("secure gRPC: backend unreachable: %s", err)
            writer.close()
            return
        self._connections.get(asyncio.current_task(), []).append(b_writer)
        local_host, local_port = b_writer.get_extra_info("sockname")[:2]
        key = f"ipv4:{local_host}:{local_port}"
        self._peers[key] = peer  # before any byte is forwarded, so no call can miss it
        try:
            await asyncio.gather(_copy(reader, b_writer), _copy(b_reader, writer))
        finally:
            self._peers.pop(key, None)
            for w in (writer, b_writer):
                w.close()

    async def stop(self, grace: float = 0.5) -> None:
        if self._front is not None:
            self._front.close()
            # Abort both sides of every open pipe (not cancel: asyncio would log a cancelled
            # connection handler as an error); each pipe then ends on its own.
            for writers in list(self._connections.values()):
                for w in writers:
                    w.transport.abort()
            if self._connections:
                await asyncio.wait(list(self._connections), timeout=5)
            await self._front.wait_closed()
            self._front = None
        if self._server is not None:
            await self._server.stop(grace)

    def describe(self) -> dict:
        return {"port": self.port, "services": self.services, "client_auth": "optional (verified if given)",
                "open_connections": len(self._peers),
                "peers": sorted(", ".join(p.identities) for p in self._peers.values() if p is not None)}


async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Forward bytes until either side goes away, then close the other direction too."""
    try:
        while data := await src.read(_CHUNK):
            dst.write(data)
            await dst.drain()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        dst.close()
