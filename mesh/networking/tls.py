"""Istio mutual TLS on the wire: the TLS contexts of outbound clusters and inbound filter chains,
with the certificate and the trusted root fetched from the local agent over SDS.

Go: the SDS references ``default`` / ``ROOTCA`` on the ``sds-grpc`` cluster
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/security/model/authentication.go#L33-L42
(their config sources #L118-L165); auto mTLS turning a cluster's TLS socket into two
``transportSocketMatches`` ``applyUpstreamTLSSettings``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/cluster_builder.go#L964-L1000
and ``defaultTransportSocketMatch`` (#L1400-L1408); the client context for ISTIO_MUTUAL
``buildUpstreamClusterTLSContext`` (#L1044-L1100) with its ALPN values
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/util/util.go#L96-L124; the
server side ``BuildInboundTLS``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/security/authn/utils/utils.go#L40-L81.

How auto mTLS decides, per endpoint: the cluster carries two sockets, one TLS socket chosen for
endpoints whose EDS metadata says ``tlsMode: istio`` (a sidecar is there to terminate it) and a
plaintext one for all others. The client checks that the server's certificate holds one of the
destination service's SPIFFE identities; the server checks only that the client's certificate
chains to the mesh root and lies in the trust domain.

Versions, ciphers and ALPN, as Istio sets them: both sides speak TLS 1.2 to 1.3
(``defaultUpstreamCommonTLSContext``, cluster_builder.go#L1390-L1398, and ``BuildInboundTLS``,
utils.go#L70-L77); the server offers Istio's cipher suites (``SupportedCiphers``, utils.go#L30-L37;
Istio leaves the client's list to Envoy's defaults). The client's ALPN says "in-mesh" —
``istio-peer-exchange, istio`` (plus ``h2`` for an HTTP/2 cluster: ``ALPNInMeshWithMxc`` /
``ALPNInMeshH2WithMxc``, util.go#L103-L115, picked in cluster_builder.go#L1087-L1101) — which the
inbound filter chains match on; the server answers ``h2, http/1.1`` for HTTP chains and
``istio-peer-exchange, h2, http/1.1`` for TCP ones (utils.go#L52-L67, util.go#L117-L124).

Simplifications, named: no DestinationRule ``tls`` settings (every in-mesh destination gets auto
mTLS), and no trust domain aliases. Istio 1.19 writes the peer's SANs in Envoy's deprecated
``match_subject_alt_names`` (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/security/model/authentication.go#L228-L240,
cluster_builder.go#L1076); mesh writes the same check in its replacement,
``match_typed_subject_alt_names`` with ``san_type: URI``, which current Envoy expects. Stock Envoy has no ``istio.alpn`` filter (see
``networking/listener_builder.py``), so a client never offers ``istio-http/1.1``: an mTLS connection
to an unnamed (sniffed) port lands on the inbound TCP-over-mTLS chain instead of the HTTP one.
"""

from __future__ import annotations

SDS_CLUSTER = "sds-grpc"
SDS_DEFAULT = "default"  # the workload's certificate chain and key
SDS_ROOT = "ROOTCA"  # the roots peers are verified against
TLS_MODE_ISTIO = "istio"
TLS_SOCKET = "envoy.transport_sockets.tls"
RAW_BUFFER_SOCKET = "envoy.transport_sockets.raw_buffer"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
UPSTREAM_TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
DOWNSTREAM_TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
RAW_BUFFER_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
TLS_INSPECTOR_TYPE = "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
ALPN_IN_MESH = ["istio-peer-exchange", "istio"]  # util.ALPNInMeshWithMxc
ALPN_IN_MESH_H2 = ["istio-peer-exchange", "istio", "h2"]  # util.ALPNInMeshH2WithMxc
ALPN_DOWNSTREAM = ["h2", "http/1.1"]  # util.ALPNHttp: inbound HTTP chains
ALPN_DOWNSTREAM_TCP = ["istio-peer-exchange", "h2", "http/1.1"]  # util.ALPNDownstreamWithMxc: TCP chains
# authn/utils.SupportedCiphers: what an inbound chain accepts over TLS 1.2.
SUPPORTED_CIPHERS = [
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-GCM-SHA256",
]
INBOUND_CAPTURE_PORT = 15006  # the sidecar's inbound listener (virtualInbound)
# Endpoint metadata Envoy matches ``transportSocketMatches`` against.
TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match"


def sds_secret(name: str) -> dict:
    """An SDS reference to ``name`` served by the agent on the ``sds-grpc`` cluster. No initial
    fetch timeout: a cluster or listener waits for its certificate rather than go without."""
    return {"name": name, "sdsConfig": {
        "apiConfigSource": {"apiType": "GRPC", "setNodeOnFirstMessageOnly": True, "transportApiVersion": "V3",
                            "grpcServices": [{"envoyGrpc": {"clusterName": SDS_CLUSTER}}]},
        "initialFetchTimeout": "0s", "resourceApiVersion": "V3"}}


def _common_context(san_matchers: list[dict], alpn: list[str], ciphers: list[str] | None = None) -> dict:
    params: dict = {"tlsMinimumProtocolVersion": "TLSv1_2", "tlsMaximumProtocolVersion": "TLSv1_3"}
    if ciphers:
        params["cipherSuites"] = list(ciphers)
    return {
        "tlsCertificateSdsSecretConfigs": [sds_secret(SDS_DEFAULT)],
        "combinedValidationContext": {
            "defaultValidationContext": {"matchTypedSubjectAltNames": san_matchers},
            "validationContextSdsSecretConfig": sds_secret(SDS_ROOT),
        },
        "alpnProtocols": list(alpn),
        "tlsParams": params,
    }


def istio_mutual_upstream(identities: list[str], sni: str, http2: bool = False) -> dict:
    """The client side of ISTIO_MUTUAL: our certificate, the server must be one of ``identities``."""
    matchers = [{"sanType": "URI", "matcher": {"exact": i}} for i in identities]
    return {"name": TLS_SOCKET, "typedConfig": {
        "@type": UPSTREAM_TLS_TYPE, "sni": sni,
        "commonTlsContext": _common_context(matchers, ALPN_IN_MESH_H2 if http2 else ALPN_IN_MESH)}}


def auto_mtls_socket_matches(identities: list[str], sni: str, http2: bool = False) -> list[dict]:
    """``transportSocketMatches`` for auto mTLS: TLS to endpoints with a sidecar, plaintext otherwise."""
    return [
        {"name": f"tlsMode-{TLS_MODE_ISTIO}", "match": {"tlsMode": TLS_MODE_ISTIO},
         "transportSocket": istio_mutual_upstream(identities, sni, http2)},
        {"name": "tlsMode-disabled", "match": {},
         "transportSocket": {"name": RAW_BUFFER_SOCKET, "typedConfig": {"@type": RAW_BUFFER_TYPE}}},
    ]


def outbound_sni(port: int, subset: str, hostname: str) -> str:
    """Istio's SNI for an in-mesh cluster: ``outbound_.9080_.v1_.reviews.default.svc.cluster.local``."""
    return f"outbound_.{port}_.{subset}_.{hostname}"


def istio_mutual_downstream(trust_domain: str, tcp: bool = False) -> dict:
    """The server side: present our certificate, require the client's, from this trust domain.
    ``tcp``: for a TCP filter chain, whose ALPN also offers ``istio-peer-exchange``."""
    matchers = [{"sanType": "URI", "matcher": {"prefix": f"spiffe://{trust_domain}/"}}]
    return {"name": TLS_SOCKET, "typedConfig": {
        "@type": DOWNSTREAM_TLS_TYPE, "requireClientCertificate": True,
        "commonTlsContext": _common_context(matchers, ALPN_DOWNSTREAM_TCP if tcp else ALPN_DOWNSTREAM,
                                            SUPPORTED_CIPHERS)}}


def tls_inspector() -> dict:
    """The listener filter that lets a filter chain match on ``transportProtocol: tls``."""
    return {"name": TLS_INSPECTOR, "typedConfig": {"@type": TLS_INSPECTOR_TYPE}}


# Node metadata the mesh agent sets when it serves its Envoy a workload certificate over SDS
# (mesh-specific: every Istio sidecar has one, while mesh's agent gets one only when given a CA).
SDS_METADATA = "MESH_WORKLOAD_CERT"


def has_workload_cert(metadata: dict) -> bool:
    return str(metadata.get(SDS_METADATA) or "").lower() == "sds"
