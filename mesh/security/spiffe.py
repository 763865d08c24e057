"""SPIFFE identities: ``spiffe://<trust domain>/ns/<namespace>/sa/<service account>``.

Go: https://github.com/istio/istio/blob/1.19.0/pkg/spiffe/spiffe.go. Every workload certificate
istiod signs carries exactly one identity, as a URI subject alternative name; Envoy checks it
when it verifies a peer.
"""

from __future__ import annotations

import re
from typing import NamedTuple

SCHEME = "spiffe://"
_IDENTITY = re.compile(r"^spiffe://([^/]+)/ns/([^/]+)/sa/([^/]+)$")


class Identity(NamedTuple):
    trust_domain: str
    namespace: str
    service_account: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"


def identity(trust_domain: str, namespace: str, service_account: str) -> str:
    return str(Identity(trust_domain, namespace, service_account))


def parse_identity(uri: str) -> Identity:
    """Parse a workload identity; raise ValueError for anything else."""
    m = _IDENTITY.match(uri)
    if not m:
        raise ValueError(f"not a SPIFFE workload identity: {uri!r} (expected spiffe://<td>/ns/<ns>/sa/<sa>)")
    return Identity(*m.groups())
