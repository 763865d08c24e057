"""``IstioCertificateService/CreateCertificate``: the CA's gRPC API, as istiod serves it on 15012.

Go: ``CreateCertificate``
https://github.com/istio/istio/blob/1.19.0/security/pkg/server/ca/server.go#L70-L146 , the CA
error → gRPC status mapping
https://github.com/istio/istio/blob/1.19.0/security/pkg/pki/error/error.go#L63-L76 , and two of
the authenticators istiod chains, first success wins
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L336-L357):

* ``ClientCertAuthenticator`` — the caller's verified TLS client certificate (a workload
  renewing the certificate it already has)
  https://github.com/istio/istio/blob/1.19.0/security/pkg/server/ca/authenticate/cert_authenticator.go#L56-L81 ;
* ``KubeJWTAuthenticator`` — a service-account JWT in ``authorization: Bearer ...``, checked
  with a TokenReview (a workload's first certificate)
  https://github.com/istio/istio/blob/1.19.0/security/pkg/server/ca/authenticate/kubeauth/kube_jwt.go#L117-L168 .

What the caller gets, and how mesh is stricter than Istio 1.19: Istio signs the *caller's*
identity (from its certificate or token) and ignores whatever SANs the CSR asks for; only the
CSR's public key is used. mesh does that too, and in addition refuses (PERMISSION_DENIED) a CSR
whose URI SAN names an identity the caller does not have, so a confused or malicious client
learns at once that it asked for someone else's name instead of silently receiving its own.

Statuses: no usable credentials → UNAUTHENTICATED; a malformed CSR or a TTL above the CA's
maximum → INVALID_ARGUMENT (Istio's ``CSRError`` and ``TTLError`` both map there); a CA that
cannot sign → INTERNAL. ``ImpersonatedIdentity`` metadata is refused with UNAUTHENTICATED, as
Istio does when no node authorizer is configured (mesh has none); ``CertSigner`` is ignored
(one CA). Simplification, named: the caller's identities from a certificate are its URI SANs
only (Istio's ``ExtractIDs`` also takes DNS and IP SANs).

Never logged: tokens, CSRs, keys. Logged: who asked, for which identity, and why a refusal.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from mesh.security.ca import CAError, IstioCA
from mesh.security.proto import ca_pb2, ca_pb2_grpc
from mesh.security.spiffe import identity
from mesh.security.tls import PeerCertificate
from mesh.security.tokens import ISTIO_CA_AUDIENCE, SA_GROUP, unverified_claims

log = logging.getLogger(__name__)

AUTH_SOURCE_CLIENT_CERT = "ClientCertificate"
AUTH_SOURCE_ID_TOKEN = "IDToken"
IMPERSONATED_IDENTITY = "ImpersonatedIdentity"
BEARER_PREFIX = "Bearer "

_CA_ERROR_STATUS = {"CSR": grpc.StatusCode.INVALID_ARGUMENT, "TTL": grpc.StatusCode.INVALID_ARGUMENT,
                    "NOT_READY": grpc.StatusCode.INTERNAL}


class AuthenticationError(Exception):
    """One authenticator could not vouch for the caller (the next one is tried)."""


@dataclass(frozen=True)
class Caller:
    auth_source: str
    identities: tuple[str, ...]
    kubernetes: dict = field(default_factory=dict)  # pod name/namespace/service account, from a token


# -- authenticators ------------------------------------------------------------------------------
class ClientCertAuthenticator:
    """The identities in the caller's verified client certificate.

    Two places a verified certificate can come from: gRPC's own TLS (``auth_context`` holds
    ``x509_pem_cert`` when gRPC verified the client), or the TLS front of istiod's secure port
    (``peer_certificate(context)``, see ``mesh/bootstrap/secure_grpc.py``), which is needed
    because Python's gRPC cannot ask for a client certificate *optionally*.
    """

    name = "ClientCertAuthenticator"

    def __init__(self, peer_certificate: Callable[[object], PeerCertificate | None] | None = None):
        self.peer_certificate = peer_certificate

    async def authenticate(self, context) -> Caller:
        auth = context.auth_context() or {}
        if auth.get("x509_pem_cert"):
            cert = x509.load_pem_x509_certificate(auth["x509_pem_cert"][0])
            peer = PeerCertificate.from_der(cert.public_bytes(serialization.Encoding.DER))
        elif self.peer_certificate is not None:
            peer = self.peer_certificate(context)
        else:
            peer = None
        if peer is None:
            raise AuthenticationError("no client certificate is presented")
        spiffe = tuple(i for i in peer.identities if i.startswith("spiffe://"))
        if not spiffe:
            raise AuthenticationError("the client certificate has no SPIFFE identity")
        return Caller(AUTH_SOURCE_CLIENT_CERT, spiffe)


class KubeJWTAuthenticator:
    """A Kubernetes service-account token, reviewed by ``token_reviewer`` (see ``tokens.py``)."""

    name = "KubeJWTAuthenticator"

    def __init__(self, token_reviewer: Callable, trust_domain: Callable[[], str],
                 audiences: tuple[str, ...] = (ISTIO_CA_AUDIENCE,)):
        self.token_reviewer = token_reviewer
        self.trust_domain = trust_domain
        self.audiences = audiences

    async def authenticate(self, context) -> Caller:
        token = bearer_token(context)
        # A bound token (it has an audience) must be meant for the CA; a legacy unbound token is
        # reviewed without audiences, as istiod does unless REQUIRE_3P_TOKEN is set.
        claims = unverified_claims(token)
        audiences = None if claims is not None and not claims.get("aud") else list(self.audiences)
        try:
            status = self.token_reviewer(token, audiences)
            if inspect.isawaitable(status):
                status = await status
        except Exception as err:  # an unreachable API server must not become an internal error
            raise AuthenticationError(f"token review failed: {err}") from err
        if status.get("error"):
            raise AuthenticationError(f"the service account authentication returns an error: {status['error']}")
        if not status.get("authenticated"):
            raise AuthenticationError("the token is not authenticated")
        user = status.get("user") or {}
        if SA_GROUP not in (user.get("groups") or []):
            raise AuthenticationError("the token is not a service account")
        parts = (user.get("username") or "").split(":")
        if len(parts) != 4 or not parts[2] or not parts[3]:
            raise AuthenticationError("invalid username field in the token review result")
        namespace, service_account = parts[2], parts[3]
        extra = user.get("extra") or {}
        pod = (extra.get("authentication.kubernetes.io/pod-name") or [""])[0]
        return Caller(AUTH_SOURCE_ID_TOKEN, (identity(self.trust_domain(), namespace, service_account),),
                      {"namespace": namespace, "service_account": service_account, "pod": pod})


def bearer_token(context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and value.startswith(BEARER_PREFIX):
            return value[len(BEARER_PREFIX):]
    raise AuthenticationError("no bearer token exists in HTTP authorization header")


# -- the service ----------------------------------------------------------------------------------
class CertificateService(ca_pb2_grpc.IstioCertificateServiceServicer):
    """The servicer. ``signed`` and ``refused`` keep a short, secret-free record for debug views."""

    def __init__(self, ca: IstioCA, authenticators: list, history: int = 100):
        self.ca = ca
        self.authenticators = authenticators
        self.signed: list[dict] = []
        self.refused: list[dict] = []
        self._history = history

    async def CreateCertificate(self, request: ca_pb2.IstioCertificateRequest, context) -> ca_pb2.IstioCertificateResponse:
        caller = await self._authenticate(context)
        if caller is None:
            await self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, "request authenticate failure")
        metadata = request.metadata.fields if request.HasField("metadata") else {}
        if IMPERSONATED_IDENTITY in metadata:
            await self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, "request impersonation authentication failure",
                               caller)
        try:
            csr = x509.load_pem_x509_csr(request.csr.encode())
            asked = _csr_uris(csr) if csr.is_signature_valid else None
        except (ValueError, UnsupportedAlgorithm):  # not a CSR, or a key type no one can verify
            asked = None
        if asked is None:
            await self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT,
                               "CSR signing error (not a PEM certificate request with a valid signature)", caller)
        foreign = [uri for uri in asked if uri not in caller.identities]
        if foreign:
            await self._refuse(context, grpc.StatusCode.PERMISSION_DENIED,
                               f"the CSR asks for {', '.join(foreign)}, but the caller is "
                               f"{', '.join(caller.identities)}", caller)
        try:
            chain = self.ca.sign_with_chain(request.csr, list(caller.identities), int(request.validity_duration))
        except CAError as err:
            await self._refuse(context, _CA_ERROR_STATUS.get(err.kind, grpc.StatusCode.INTERNAL),
                               f"CSR signing error ({err})", caller)
        leaf = x509.load_pem_x509_certificate(chain[0].encode())
        self._remember(self.signed, {
            "identities": list(caller.identities), "auth_source": caller.auth_source,
            "ttl_seconds": int((leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds()),
            "serial": format(leaf.serial_number, "x"), "chain_length": len(chain)})
        log.info("CSR signed for %s (%s)", ", ".join(caller.identities), caller.auth_source)
        return ca_pb2.IstioCertificateResponse(cert_chain=chain)

    async def _authenticate(self, context) -> Caller | None:
        failures = []
        for authenticator in self.authenticators:
            try:
                return await authenticator.authenticate(context)
            except AuthenticationError as err:
                failures.append(f"{authenticator.name}: {err}")
        log.info("failed to authenticate client %s: %s", context.peer(), "; ".join(failures))
        return None

    async def _refuse(self, context, code: grpc.StatusCode, message: str, caller: Caller | None = None):
        self._remember(self.refused, {"code": code.name, "message": message,
                                      "identities": list(caller.identities) if caller else []})
        log.info("CreateCertificate refused (%s): %s", code.name, message)
        await context.abort(code, message)  # raises

    def _remember(self, records: list, record: dict) -> None:
        records.append(record)
        del records[:-self._history]

    def describe(self) -> dict:
        return {"ca": self.ca.source, "authenticators": [a.name for a in self.authenticators],
                "signed": list(self.signed), "refused": list(self.refused)}


def _csr_uris(csr: x509.CertificateSigningRequest) -> list[str]:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.UniformResourceIdentifier)


