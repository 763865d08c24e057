"""Service-account tokens and their review: how a workload proves who it is before it has a cert.

A pod's first ``CreateCertificate`` call carries its projected service-account token (a JWT
with audience ``istio-ca``); istiod does not check the JWT itself but asks the API server with a
``TokenReview`` and trusts the answer. Go: ``ValidateK8sJwt`` and the checks on its result
https://github.com/istio/istio/blob/1.19.0/security/pkg/k8s/tokenreview/k8sauthn.go#L40-L113 .

A token reviewer here is any callable ``(token, audiences or None) -> status`` (sync or async)
returning a TokenReview ``status`` in the API's JSON shape::

    {"authenticated": True, "audiences": ["istio-ca"],
     "user": {"username": "system:serviceaccount:default:reviews", "uid": "...",
              "groups": ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"],
              "extra": {"authentication.kubernetes.io/pod-name": ["reviews-v1-..."]}}}

Two reviewers:

* ``LiveTokenReviewer`` posts a real TokenReview to a live API server (``LiveClient``).
* ``ServiceAccountTokens`` is the in-process stand-in for a replayed cluster. The replay API
  server (``mesh/kube/apiserver``) has no TokenRequest/TokenReview endpoints, so this object
  plays both parts: ``issue`` mints ES256-signed tokens (the TokenRequest API, as kubelet asks
  for a projected token) with a key only it holds, and ``review`` verifies signature, expiry,
  audience, and that the ServiceAccount (and the bound pod) still exist in the cluster, as
  kube-apiserver's service-account authenticator does. Tokens are opaque secrets: nothing
  here logs one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

ISSUER = "https://kubernetes.default.svc.cluster.local"
ISTIO_CA_AUDIENCE = "istio-ca"  # TOKEN_AUDIENCES' default in istiod and pilot-agent
SA_GROUP = "system:serviceaccounts"
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
DEFAULT_TOKEN_TTL = 3600


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def unverified_claims(token: str) -> dict | None:
    """The JWT's payload, not verified (istiod peeks at ``aud`` to choose the review's audiences)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(_unb64url(parts[1]))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


def _denied(error: str) -> dict:
    return {"authenticated": False, "error": error, "user": {}}


class ServiceAccountTokens:
    """Issue and review service-account JWTs for a replayed cluster (see the module docstring)."""

    def __init__(self, kube_client=None, issuer: str = ISSUER, now: Callable[[], float] = time.time):
        self.kube_client = kube_client
        self.issuer = issuer
        self.now = now
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._kid = uuid.uuid4().hex[:16]

    def __repr__(self) -> str:
        return f"ServiceAccountTokens(issuer={self.issuer!r}, key=<hidden>)"

    # -- TokenRequest ---------------------------------------------------------------------------
    def issue(self, namespace: str, service_account: str, audiences: tuple[str, ...] = (ISTIO_CA_AUDIENCE,),
              ttl: int = DEFAULT_TOKEN_TTL, pod: dict | None = None) -> str:
        """A token for ``namespace/service_account`` (bound to ``pod`` if given). KeyError when the
        cluster has no such ServiceAccount, as the TokenRequest API answers 404."""
        sa = self._get("serviceaccounts", service_account, namespace)
        if self.kube_client is not None and sa is None:
            raise KeyError(f"ServiceAccount {namespace}/{service_account} not found")
        now = int(self.now())
        k8s: dict = {"namespace": namespace,
                     "serviceaccount": {"name": service_account, "uid": (sa or {}).get("metadata", {}).get("uid", "")}}
        if pod is not None:
            k8s["pod"] = {"name": pod["metadata"]["name"], "uid": pod["metadata"].get("uid", "")}
        claims = {"aud": list(audiences), "exp": now + ttl, "iat": now, "nbf": now, "iss": self.issuer,
                  "kubernetes.io": k8s, "sub": f"system:serviceaccount:{namespace}:{service_account}"}
        header = {"alg": "ES256", "kid": self._kid, "typ": "JWT"}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    # -- TokenReview ----------------------------------------------------------------------------
    def review(self, token: str, audiences: list[str] | None = None) -> dict:
        """The TokenReview status for ``token``; ``audiences`` None accepts any audience."""
        parts = token.split(".")
        if len(parts) != 3:
            return _denied("not a JWT")
        try:
            header = json.loads(_unb64url(parts[0]))
            claims = json.loads(_unb64url(parts[1]))
            raw = _unb64url(parts[2])
        except ValueError:
            return _denied("not a JWT")
        if header.get("alg") != "ES256" or header.get("kid") != self._kid or len(raw) != 64:
            return _denied("token not signed by this cluster's service-account issuer")
        signature = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        try:
            self._key.public_key().verify(signature, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return _denied("invalid token signature")
        now = self.now()
        if claims.get("iss") != self.issuer:
            return _denied("wrong issuer")
        if not claims.get("nbf", 0) <= now < claims.get("exp", 0):
            return _denied("token has expired or is not yet valid")
        token_aud = claims.get("aud") or []
        accepted = [a for a in token_aud if audiences is None or a in audiences]
        if audiences is not None and not accepted:
            return _denied("token audiences are not acceptable")
        k8s = claims.get("kubernetes.io") or {}
        namespace, sa = k8s.get("namespace", ""), (k8s.get("serviceaccount") or {}).get("name", "")
        if self.kube_client is not None:
            if self._get("serviceaccounts", sa, namespace) is None:
                return _denied(f"service account {namespace}/{sa} has been deleted")
            pod = k8s.get("pod")
            if pod and self._get("pods", pod["name"], namespace) is None:
                return _denied(f"pod {namespace}/{pod['name']} has been deleted")
        user = {"username": f"system:serviceaccount:{namespace}:{sa}",
                "uid": (k8s.get("serviceaccount") or {}).get("uid", ""),
                "groups": [SA_GROUP, f"{SA_GROUP}:{namespace}", "system:authenticated"], "extra": {}}
        if k8s.get("pod"):
            user["extra"] = {POD_NAME_EXTRA: [k8s["pod"]["name"]], POD_UID_EXTRA: [k8s["pod"]["uid"]]}
        return {"authenticated": True, "audiences": accepted if audiences is not None else token_aud, "user": user}

    __call__ = review  # a ServiceAccountTokens is itself a token reviewer

    def _get(self, kind: str, name: str, namespace: str) -> dict | None:
        return self.kube_client.get(kind, name, namespace) if self.kube_client is not None else None


class LiveTokenReviewer:
    """Post a TokenReview to a live API server through a ``LiveClient`` (off the event loop)."""

    def __init__(self, live_client):
        self.live_client = live_client

    async def __call__(self, token: str, audiences: list[str] | None = None) -> dict:
        spec: dict = {"token": token}
        if audiences is not None:
            spec["audiences"] = list(audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        answer = await asyncio.to_thread(self.live_client.api.json, "POST",
                                         "/apis/authentication.k8s.io/v1/tokenreviews", None, body)
        return answer.get("status") or _denied("empty TokenReview status")
