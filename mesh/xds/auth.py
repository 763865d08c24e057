"""Who is on the other end of an ADS stream: the verified identity of a TLS peer.

Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/auth.go — ``authenticate`` (#L34-L40)
asks the authenticators for the caller's identities, which exist only on the TLS port: on
plaintext 15010 there are none (https://github.com/istio/istio/blob/1.19.0/pkg/security/authentication.go#L35-L52).
``authorize`` (#L42-L57) then, with ``PILOT_ENABLE_XDS_IDENTITY_CHECK`` (on by default), requires
one of them to be a SPIFFE identity in the proxy's namespace with the proxy's service account
(``checkConnectionIdentity``, #L59-L74) and refuses the stream with PERMISSION_DENIED otherwise;
the identity that matched becomes ``proxy.VerifiedIdentity`` — which the WorkloadEntry
controller requires of a VM that auto-registers.

mesh's secure port (``mesh.bootstrap.secure_grpc``) verifies client certificates; the ADS
handlers it serves are wrapped with ``authenticated(peer_identities)``, which records the peer's
URI SANs for the stream. The plaintext port's handlers are not wrapped: no identities, as in istiod.

Simplifications, named: only client certificates authenticate (istiod also accepts a
service-account JWT on 15012); the ``spiffe://`` parse is the strict five-part form
``spiffe://<trust domain>/ns/<namespace>/sa/<account>``.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable

from mesh.model.proxy import Proxy

# The identities of the stream being served (set by the handler wrapper, read when it starts).
PEER_IDENTITIES: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("peer_identities", default=())


def identity_check_enabled(env=os.environ) -> bool:
    """``PILOT_ENABLE_XDS_IDENTITY_CHECK`` (features/pilot.go), on unless set false."""
    return env.get("PILOT_ENABLE_XDS_IDENTITY_CHECK", "true").strip() not in ("0", "f", "F", "false", "FALSE", "False")


def authenticated(handler, peer_identities: Callable[[object], tuple[str, ...]]):
    """``handler(requests, context)`` with the TLS peer's identities recorded for the stream."""
    async def serve(requests, context):
        PEER_IDENTITIES.set(tuple(peer_identities(context)))
        return await handler(requests, context)
    return serve


def parse_spiffe(uri: str) -> tuple[str, str, str] | None:
    """``spiffe.ParseIdentity``: (trust domain, namespace, service account), or None."""
    if not uri.startswith("spiffe://"):
        return None
    parts = uri.removeprefix("spiffe://").split("/")
    if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
        return None
    return parts[0], parts[2], parts[4]


def check_connection_identity(proxy: Proxy, identities: tuple[str, ...]) -> tuple[str, str]:
    """``checkConnectionIdentity``: the (namespace, service account) of the first identity that
    fits the proxy's namespace and service account; ValueError when none does."""
    account = proxy.metadata.get("SERVICE_ACCOUNT") or ""
    for raw in identities:
        parsed = parse_spiffe(raw)
        if parsed is None:
            continue
        _, namespace, service_account = parsed
        if proxy.namespace and namespace != proxy.namespace:
            continue
        if account and service_account != account:
            continue
        return namespace, service_account
    raise ValueError(f"no identities ({', '.join(identities)}) matched {proxy.namespace}/{account}")
