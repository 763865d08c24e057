"""The agent's workload certificate: a new key and CSR, signed by istiod's CA over TLS, and when
to do it again.

Go: ``generateNewSecret`` (key + CSR for the pod's SPIFFE identity, ``CSRSign``, expiry from the
leaf) and ``rotateTime``
https://github.com/istio/istio/blob/1.19.0/security/pkg/nodeagent/cache/secretcache.go#L554-L638 ;
the CA client, which calls ``CreateCertificate`` on istiod's secure port with the service-account
token as a bearer credential and the ``ClusterID`` header
https://github.com/istio/istio/blob/1.19.0/security/pkg/nodeagent/caclient/providers/citadel/client.go#L83-L112 ;
the rotation ratio ``SECRET_GRACE_PERIOD_RATIO`` = 0.5
https://github.com/istio/istio/blob/1.19.0/pilot/cmd/pilot-agent/options/options.go#L77-L78.

The agent trusts istiod only through the mesh root (the ``istio-ca-root-cert`` ConfigMap's
``root-cert.pem``), and checks istiod's certificate for the name ``istiod.istio-system.svc``
while connecting to a loopback address.

The private key lives in this process only: ``WorkloadCert`` hides it from ``repr``, nothing
here logs it or writes it to disk. Envoy receives it over the SDS socket, as from pilot-agent.
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from cryptography import x509

from mesh.security.ca import key_to_pem, make_csr
from mesh.security.proto import ca_pb2, ca_pb2_grpc
from mesh.security.spiffe import identity
from mesh.security.tls import uri_sans

log = logging.getLogger(__name__)

ISTIOD_SAN = "istiod.istio-system.svc"
GRACE_PERIOD_RATIO = 0.5  # SECRET_GRACE_PERIOD_RATIO: rotate when half the lifetime is left
CLUSTER_ID = "Kubernetes"


@dataclass(frozen=True)
class WorkloadCert:
    """A signed chain (leaf first) and its private key; the key never shows in ``repr``."""

    chain_pem: str
    root_pem: str
    key_pem: bytes = field(repr=False)
    created: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.chain_pem.encode())

    @property
    def identities(self) -> tuple[str, ...]:
        return uri_sans(self.leaf)

    @property
    def expires(self) -> dt.datetime:
        return self.leaf.not_valid_after_utc

    def rotate_at(self, ratio: float = GRACE_PERIOD_RATIO) -> dt.datetime:
        """``rotateTime``: when ``ratio`` of the time from issue to expiry is left. From the time
        the agent got it, not the leaf's NotBefore, which the CA backdates for clock skew."""
        return self.expires - (self.expires - self.created) * ratio

    def describe(self) -> dict:
        """What a debug view may show: no key."""
        leaf = self.leaf
        return {"identities": list(self.identities), "serial": format(leaf.serial_number, "x"),
                "ttl_seconds": round((self.expires - self.created).total_seconds())}


TokenSource = Callable[[], str | Awaitable[str]]


class CAClient:
    """``CreateCertificate`` on istiod's secure port (``host:port``), trusting only ``root_pem``."""

    def __init__(self, address: str, root_pem: str, token: TokenSource, server_name: str = ISTIOD_SAN,
                 cluster_id: str = CLUSTER_ID, timeout: float = 10.0):
        self.address = address
        self.root_pem = root_pem
        self.token = token
        self.server_name = server_name
        self.cluster_id = cluster_id
        self.timeout = timeout

    async def sign(self, csr_pem: str, ttl_seconds: int) -> list[str]:
        token = self.token()
        if inspect.isawaitable(token):
            token = await token
        creds = grpc.ssl_channel_credentials(self.root_pem.encode())
        options = [("grpc.ssl_target_name_override", self.server_name)]
        async with grpc.aio.secure_channel(self.address, creds, options=options) as channel:
            stub = ca_pb2_grpc.IstioCertificateServiceStub(channel)
            response = await stub.CreateCertificate(
                ca_pb2.IstioCertificateRequest(csr=csr_pem, validity_duration=ttl_seconds),
                metadata=[("authorization", f"Bearer {token}"), ("clusterid", self.cluster_id)],
                timeout=self.timeout)
        return list(response.cert_chain)


async def fetch_workload_cert(client: CAClient, trust_domain: str, namespace: str, service_account: str,
                              ttl_seconds: int = 0, key_type: str = "RSA") -> WorkloadCert:
    """A fresh key, a CSR for ``spiffe://<td>/ns/<ns>/sa/<sa>``, signed; checked before use."""
    wanted = identity(trust_domain, namespace, service_account)
    csr_pem, key = make_csr(wanted, key_type)
    chain = await client.sign(csr_pem, ttl_seconds)
    if not chain:
        raise ValueError("CreateCertificate returned an empty chain")
    # The whole chain goes to Envoy, as Istio concatenates it; the roots peers are checked against
    # stay the ones the agent was given (istio-ca-root-cert), not whatever the response ends with.
    cert = WorkloadCert("".join(c if c.endswith("\n") else c + "\n" for c in chain), client.root_pem, key_to_pem(key))
    if wanted not in cert.identities:
        raise ValueError(f"the CA signed {list(cert.identities)}, not {wanted}")
    log.info("workload certificate for %s, serial %s, expires %s", wanted, cert.describe()["serial"],
             cert.expires.isoformat())
    return cert


@dataclass(frozen=True)
class WorkloadCertConfig:
    """How an agent gets its certificate: istiod's secure address, the mesh root to trust there,
    a service-account token source, and the TTL to ask for (0: the CA's default, 24 h)."""

    ca_address: str  # "host:port" of istiod's secure gRPC port (15012)
    root_pem: str = field(repr=False)
    token: TokenSource = field(repr=False)
    trust_domain: str = "cluster.local"
    ttl_seconds: int = 0
    grace_period_ratio: float = GRACE_PERIOD_RATIO
    server_name: str = ISTIOD_SAN

    def client(self) -> CAClient:
        return CAClient(self.ca_address, self.root_pem, self.token, self.server_name)
