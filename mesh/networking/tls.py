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

Simplifications, named: no ``istio-peer-exchange`` ALPN (mesh has no metadata-exchange filter),
no DestinationRule ``tls`` settings (every in-mesh destination gets auto mTLS), and no trust
domain aliases.
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
ALPN_IN_MESH = ["istio"]
ALPN_IN_MESH_H2 = ["istio", "h2"]
ALPN_DOWNSTREAM = ["h2", "http/1.1"]
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


def _common_context(san_matchers: list[dict], alpn: list[str]) -> dict:
    return {
        "tlsCertificateSdsSecretConfigs": [sds_secret(SDS_DEFAULT)],
        "combinedValidationContext": {
            "defaultValidationContext": {"matchTypedSubjectAltNames": san_matchers},
            "validationContextSdsSecretConfig": sds_secret(SDS_ROOT),
        },
        "alpnProtocols": alpn,
        "tlsParams": {"tlsMinimumProtocolVersion": "TLSv1_2"},
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


def istio_mutual_downstream(trust_domain: str) -> dict:
    """The server side: present our certificate, require the client's, from this trust domain."""
    matchers = [{"sanType": "URI", "matcher": {"prefix": f"spiffe://{trust_domain}/"}}]
    return {"name": TLS_SOCKET, "typedConfig": {
        "@type": DOWNSTREAM_TLS_TYPE, "requireClientCertificate": True,
        "commonTlsContext": _common_context(matchers, ALPN_DOWNSTREAM)}}


def tls_inspector() -> dict:
    """The listener filter that lets a filter chain match on ``transportProtocol: tls``."""
    return {"name": TLS_INSPECTOR, "typedConfig": {"@type": TLS_INSPECTOR_TYPE}}


# Node metadata the mesh agent sets when it serves its Envoy a workload certificate over SDS
# (mesh-specific: every Istio sidecar has one, while mesh's agent gets one only when given a CA).
SDS_METADATA = "MESH_WORKLOAD_CERT"


def has_workload_cert(metadata: dict) -> bool:
    return str(metadata.get(SDS_METADATA) or "").lower() == "sds"
