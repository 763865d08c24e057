"""A DestinationRule's ``tls`` on an outbound cluster: DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL, and
auto mTLS when the rule says nothing.

Go: ``buildAutoMtlsSettings``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/cluster_builder.go#L798-L849,
``applyUpstreamTLSSettings`` (#L964-L1000) and ``buildUpstreamClusterTLSContext`` (#L1044-L1202);
credentials over SDS ``ApplyCustomSDSToClientCommonTLSContext`` and
``ConstructSdsSecretConfigForCredential``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/security/model/authentication.go#L75-L95
(#L249-L276), ``credentials.ToResourceName``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/credentials/resource.go#L71-L81; file-based certificates as SDS names ``file-cert:<cert>~<key>`` / ``file-root:<ca>``
https://github.com/istio/istio/blob/1.19.0/pkg/security/security.go#L551-L569; the
``alpn_override`` metadata ``AddALPNOverrideToMetadata``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/util/util.go#L406-L432.

What each mode gives (the client side; the server is the destination's business):

* no ``tls``: auto mTLS — two ``transportSocketMatches``, TLS with the workload certificate to
  endpoints with a sidecar, plaintext to the rest (``networking/tls.py``);
* ``ISTIO_MUTUAL``: that TLS socket for every endpoint, its SNI the rule's ``sni`` or
  ``outbound_.<port>_.<subset>_.<host>``, the server checked against ``subjectAltNames`` or the
  service's identities;
* ``SIMPLE``: TLS with no client certificate; the server checked against ``caCertificates``
  (a file, fetched as ``file-root:<path>``) or, with ``credentialName``, the Secret's CA
  (``kubernetes://<name>-cacert``) over ADS — or not at all with ``insecureSkipVerify`` or no CA;
* ``MUTUAL``: the same plus the client's certificate, ``file-cert:<cert>~<key>`` or
  ``kubernetes://<name>``; without either, Istio logs an error and the cluster gets no TLS;
* ``DISABLE``: plaintext.

A sidecar never gets a ``credentialName`` rule's SIMPLE/MUTUAL context unless the rule has a
``workloadSelector`` (cluster_builder.go#L1048-L1057): the Secret would go to every sidecar in its
scope, each waiting on it at startup. The cluster then has no TLS at all — as in Istio.

Simplifications, named: ``ENABLE_AUTO_SNI``, ``VERIFY_CERTIFICATE_AT_CLIENT``, MeshConfig
``tlsDefaults`` and proxy-metadata certificates are off or absent (their 1.19 defaults); no
external SDS socket. mesh's ADS serves no secrets, so a ``credentialName`` cluster of a gateway
(or of a sidecar under a ``workloadSelector`` rule) waits Envoy's initial fetch timeout and then
has no certificate. Istio writes the SAN check in Envoy's deprecated ``match_subject_alt_names``,
which matches a name of any SAN type; mesh writes the same check in ``match_typed_subject_alt_names``,
URI only for ISTIO_MUTUAL (SPIFFE identities are URIs) and one matcher per type (DNS, URI, EMAIL,
IP_ADDRESS) for SIMPLE/MUTUAL, which is how Envoy reads the deprecated field. Auto mTLS applies to
EDS clusters of in-mesh services of a proxy with a workload certificate (mesh's agent may have
none), not to headless ones, rather than asking PeerAuthentication (``BestEffortInferServiceMTLSMode``).
"""

from __future__ import annotations

from mesh.networking.cluster_traffic_policy import MutableCluster
from mesh.networking.tls import (
    SDS_DEFAULT,
    SDS_ROOT,
    TLS_SOCKET,
    UPSTREAM_TLS_TYPE,
    auto_mtls_socket_matches,
    istio_mutual_upstream,
    sds_secret,
)

CREDENTIAL_PREFIX = "kubernetes://"  # credentials.ToResourceName
CA_SUFFIX = "-cacert"  # SdsCaSuffix
BUILTIN_CREDENTIAL = "builtin://"  # credentials.BuiltinGatewaySecretTypeURI: the workload's own
ALPN_H2_ONLY = ["h2"]  # util.ALPNH2Only
SAN_TYPES = ("DNS", "URI", "EMAIL", "IP_ADDRESS")


def credential_resource_name(name: str) -> str:
    """``credentials.ToResourceName``: ``kubernetes://<name>`` unless the name already says its kind."""
    if name.startswith(BUILTIN_CREDENTIAL):
        return SDS_DEFAULT
    if name.startswith(("kubernetes://", "kubernetes-gateway://")):
        return name
    return CREDENTIAL_PREFIX + name


def credential_secret(name: str) -> dict:
    """``ConstructSdsSecretConfigForCredential``: a Secret named by ``credentialName``, over ADS
    and with Envoy's default initial fetch timeout — a missing Secret must not block the cluster
    forever."""
    if name == BUILTIN_CREDENTIAL:
        return sds_secret(SDS_DEFAULT)
    if name == BUILTIN_CREDENTIAL + CA_SUFFIX:
        return sds_secret(SDS_ROOT)
    return {"name": credential_resource_name(name), "sdsConfig": {"ads": {}, "resourceApiVersion": "V3"}}


def auto_mtls_settings(tls: dict | None, service_accounts: list[str], sni: str,
                       auto_mtls: bool) -> tuple[dict | None, bool]:
    """``buildAutoMtlsSettings``: the TLS settings to apply and whether they were auto-detected.
    ``auto_mtls``: the mesh may use mTLS here unasked (see the module docstring)."""
    if tls is not None:
        if tls.get("mode") != "ISTIO_MUTUAL":
            return tls, False
        # ISTIO_MUTUAL: the rule's SNI and SANs if it gives them, else the generated ones (an
        # empty list arrives in Go as nil, so it too means "not given")
        return {"mode": "ISTIO_MUTUAL", "sni": tls.get("sni") or sni,
                "subjectAltNames": list(tls.get("subjectAltNames") or service_accounts)}, False
    if not auto_mtls:
        return None, False
    return {"mode": "ISTIO_MUTUAL", "sni": sni, "subjectAltNames": list(service_accounts)}, True


def apply_upstream_tls(mc: MutableCluster, tls: dict | None, auto_detected: bool, sidecar: bool,
                       rule_has_selector: bool, external_registry: bool = False,
                       service_accounts: list[str] | None = None) -> None:
    """``applyUpstreamTLSSettings``: a ``transportSocket``, or — auto-detected mTLS on a cluster
    that is not ORIGINAL_DST — the two ``transportSocketMatches``."""
    cluster = mc.cluster
    if tls is None:
        return
    if auto_detected:
        if cluster["type"] != "ORIGINAL_DST":
            cluster["transportSocketMatches"] = auto_mtls_socket_matches(
                tls["subjectAltNames"], tls["sni"], http2=mc.is_http2())
        return
    socket = upstream_tls_socket(mc, tls, sidecar, rule_has_selector, external_registry, service_accounts or [])
    if socket is not None:
        cluster["transportSocket"] = socket


def upstream_tls_socket(mc: MutableCluster, tls: dict, sidecar: bool, rule_has_selector: bool,
                        external_registry: bool, service_accounts: list[str]) -> dict | None:
    """``buildUpstreamClusterTLSContext`` wrapped in its transport socket; None for no TLS."""
    mode = tls.get("mode", "DISABLE")
    if tls.get("credentialName") and sidecar and not rule_has_selector and mode in ("SIMPLE", "MUTUAL"):
        return None
    if mode == "ISTIO_MUTUAL":
        return istio_mutual_upstream(tls["subjectAltNames"], tls.get("sni") or mc.cluster["name"], http2=mc.is_http2())
    if mode not in ("SIMPLE", "MUTUAL"):
        return None  # DISABLE
    common: dict = {"tlsParams": {"tlsMaximumProtocolVersion": "TLSv1_3", "tlsMinimumProtocolVersion": "TLSv1_2"}}
    sans = tls.get("subjectAltNames") or (service_accounts if external_registry else [])
    insecure = bool(tls.get("insecureSkipVerify"))
    if tls.get("credentialName"):
        name = tls["credentialName"]
        if mode == "MUTUAL":
            common["tlsCertificateSdsSecretConfigs"] = [credential_secret(name)]
        if not insecure:
            common["combinedValidationContext"] = _validation(sans, credential_secret(name + CA_SUFFIX))
    else:
        if mode == "MUTUAL":
            if not tls.get("clientCertificate") or not tls.get("privateKey"):
                return None  # Istio: "client certificate and private key must not be empty"
            common["tlsCertificateSdsSecretConfigs"] = [
                sds_secret(f"file-cert:{tls['clientCertificate']}~{tls['privateKey']}")]
        if tls.get("caCertificates") and not insecure:
            common["combinedValidationContext"] = _validation(sans, sds_secret(f"file-root:{tls['caCertificates']}"))
        else:
            common["validationContext"] = {}
    if mc.is_http2():
        common["alpnProtocols"] = list(ALPN_H2_ONLY)
    context: dict = {"@type": UPSTREAM_TLS_TYPE, "commonTlsContext": common}
    if tls.get("sni"):
        context["sni"] = tls["sni"]
    return {"name": TLS_SOCKET, "typedConfig": context}


def _validation(sans: list[str], root: dict) -> dict:
    matchers = [{"sanType": t, "matcher": {"exact": s}} for s in sans for t in SAN_TYPES]
    return {"defaultValidationContext": {"matchTypedSubjectAltNames": matchers} if matchers else {},
            "validationContextSdsSecretConfig": root}


def alpn_override_metadata(istio_metadata: dict, tls: dict | None) -> None:
    """SIMPLE/MUTUAL: the app's own TLS, so the proxy must not add Istio's ALPN values."""
    if (tls or {}).get("mode") in ("SIMPLE", "MUTUAL"):
        istio_metadata["alpn_override"] = "false"

