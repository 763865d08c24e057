"""Stages 11 and 16: the secure discovery service (15012) and the discovery service (15010).

Go: ``initSecureDiscoveryService``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L725-L780: a gRPC server
with istiod's certificate that verifies client certificates if given; the CA service joins it
(``RunCA``, here ``mesh.bootstrap.istio_ca.run_ca``, at once instead of at the end of
``NewServer``) and ADS joins it in stage 16. The TLS front itself is ``mesh.bootstrap.secure_grpc``.

``initDiscoveryService``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L642-L650 adds a start
func that runs ``DiscoveryServer.Start`` (debounce + push sender, discovery.go#L229-L235); the gRPC
listeners open last in ``Server.Start`` (server.go#L437-L463). mesh does the same: the ADS server
is made in stage 16, registered on the TLS gRPC server of stage 11 too, and listens on the xDS
port when ``start()`` runs. Until the informers have synced, a new stream is refused with
UNAVAILABLE, as istiod refuses it. The monitoring port (15014) starts with it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mesh.bootstrap import debug_routes, istio_ca
from mesh.bootstrap.http import build_monitoring_app
from mesh.bootstrap.secure_grpc import SecureGrpcServer
from mesh.security.tls import server_context
from mesh.util.web import serve_app
from mesh.xds.ads import AdsServer

if TYPE_CHECKING:
    from mesh.bootstrap.server import Server

log = logging.getLogger("mesh.bootstrap")


def client_roots_pem(server: Server) -> str:
    """Roots a client certificate may chain to: the CA's own, as ``createPeerCertVerifier``
    builds them (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L1015-L1051).
    The workload trust bundle of stage 9 is what *workloads* trust; it is not consulted here."""
    return server.ca.root_pem if server.ca is not None else ""


def init_secure_discovery_service(server: Server) -> None:
    if server.istiod_cert is None or "secure_xds" not in server.args.ports:
        log.warning("the secure discovery service is disabled (no istiod certificate or no secure_xds port)")
        return
    server.secure_grpc_server = SecureGrpcServer(
        lambda: server_context(server.istiod_cert, client_roots_pem(server), alpn=["h2"]))
    if server.ca is not None:
        istio_ca.run_ca(server)
    server.add_start_func("secure gRPC", serve_secure_grpc)
    server.debug_routes["/debug/ca"] = lambda q: {
        **(server.ca_service.describe() if server.ca_service else {}),
        "secure_grpc": server.secure_grpc_server.describe()}


async def serve_secure_grpc(server: Server) -> None:
    port = await server.secure_grpc_server.start(server.args.host, server.args.ports["secure_xds"])
    server.bound_ports["secure_xds"] = port
    server.stop_funcs.append(server.secure_grpc_server.stop)


def init_discovery_service(server: Server) -> AdsServer:
    env = server.environment
    ads = AdsServer(server.xds, server.xds_generators, env.service_discovery, env.config_store,
                    domain=env.domain_suffix, is_ready=server.has_synced)
    ads.trust_domain = lambda: env.mesh()["trustDomain"]  # inbound mTLS accepts this domain
    ads.outbound_traffic_mode = lambda: (env.mesh().get("outboundTrafficPolicy") or {}).get("mode", "ALLOW_ANY")
    ads.mesh_config = env.mesh  # rootNamespace and the default exportTo lists
    if server.secure_grpc_server is not None:
        secure = server.secure_grpc_server  # its streams carry the client certificate's identities
        secure.add_generic_rpc_handlers(ads.rpc_handlers(peer_identities=secure.peer_identities))
    server.add_start_func("xds server", start_xds)
    server.add_start_func("monitoring", start_monitoring)
    server.debug_routes.update(debug_routes.discovery_routes(ads))
    return ads


async def start_xds(server: Server) -> None:
    server.xds.start()
    port = await server.ads.start(server.args.host, server.args.ports.get("xds", 15010))
    server.bound_ports["xds"] = port
    server.stop_funcs.append(server.ads.stop)


async def start_monitoring(server: Server) -> None:
    runner, port = await serve_app(build_monitoring_app(server.ads.metrics.registry), server.args.host,
                                   server.args.ports.get("monitoring", 15014))
    server.bound_ports["monitoring"] = port
    server.stop_funcs.append(runner.cleanup)
