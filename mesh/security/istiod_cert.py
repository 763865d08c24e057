"""istiod's own serving certificate: DNS names of the istiod Service, signed by the mesh CA.

Go: ``initIstiodCerts`` and ``getDNSNames``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L939-L1013). Clients
(Envoy on 15012, kube-apiserver calling webhooks on 15017) reach istiod by its Service name, so
the certificate carries ``istiod.<ns>.svc`` and the historical aliases ``istiod-remote`` and
``istio-pilot`` (plus ``istiod-<rev>`` for a revision), and the host of the discovery address.
Given ``--tls-cert``/``--tls-key`` files instead, istiod uses those (and watches them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mesh.security.ca import SELF_SIGNED_CA_CERT_TTL, IstioCA, key_to_pem, make_csr

# 1.19 signs istiod's own certificate with the self-signed CA's lifetime (10 years), skipping the
# workload maximum: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/certcontroller.go#L112-L113
ISTIOD_CERT_TTL = SELF_SIGNED_CA_CERT_TTL


def dns_names(discovery_host: str, namespace: str = "istio-system", revision: str = "") -> list[str]:
    names = [discovery_host]
    known = ["istiod", "istiod-remote", "istio-pilot"]
    if revision not in ("", "default"):
        known.append(f"istiod-{revision}")
    for alias in known:
        name = f"{alias}.{namespace}.svc"
        if name not in names:
            names.append(name)
    return names


@dataclass(repr=False)
class IstiodCert:
    chain_pem: str  # leaf first
    key_pem: bytes = field(repr=False)
    dns_names: list[str] = field(default_factory=list)
    source: str = ""

    def __repr__(self) -> str:
        return f"IstiodCert(dns_names={self.dns_names!r}, source={self.source!r}, key=<hidden>)"

    @property
    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificates(self.chain_pem.encode())[0]


def sign_istiod_cert(ca: IstioCA, names: list[str]) -> IstiodCert:
    csr, key = make_csr(names[0])  # RSA 2048, as GenKeyCert makes it
    chain = ca.sign_with_chain(csr, names, int(ISTIOD_CERT_TTL.total_seconds()), check_lifetime=False)
    return IstiodCert("".join(chain), key_to_pem(key), names, "signed by the mesh CA")


def load_istiod_cert(cert_file: str, key_file: str) -> IstiodCert:
    cert_pem = Path(cert_file).read_text()
    key_pem = Path(key_file).read_bytes()
    serialization.load_pem_private_key(key_pem, password=None)  # fail early on a bad key
    leaf = x509.load_pem_x509_certificates(cert_pem.encode())[0]
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    return IstiodCert(cert_pem, key_pem, names, f"files {cert_file}, {key_file}")

