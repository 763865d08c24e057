"""IstioCA: a self-signed root (kept in the ``istio-ca-secret`` Secret) or a plugged-in CA, which
signs CSRs into workload certificates carrying one SPIFFE identity.

Go: the self-signed root that is loaded from, or written to, the Secret
https://github.com/istio/istio/blob/1.19.0/security/pkg/pki/ca/ca.go#L118-L193 ; signing, with
its TTL rules, https://github.com/istio/istio/blob/1.19.0/security/pkg/pki/ca/ca.go#L414-L452 ;
the certificate template built from a CSR
https://github.com/istio/istio/blob/1.19.0/security/pkg/pki/util/generate_cert.go#L289-L339 ;
the names of the files and Secret keys
https://github.com/istio/istio/blob/1.19.0/security/pkg/pki/ca/ca.go#L40-L64.

Facts reproduced from 1.19: workload TTL 24 h by default and 90 days at most
(``DEFAULT_WORKLOAD_CERT_TTL``, ``MAX_WORKLOAD_CERT_TTL``), self-signed root valid 10 years
(``CITADEL_SELF_SIGNED_CA_CERT_TTL``), RSA 2048 keys, root subject ``O=<trust domain>``,
leaf certificates with an empty subject, a critical SAN, and both server and client auth.
ECDSA P-256 is selectable here for the root and istiod's own key.

Private keys never leave this module as text except into the Secret or files they came from:
``KeyCertBundle`` hides them from ``repr``.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_SECRET = "istio-ca-secret"
CA_SECRET_TYPE = "istio.io/ca-root"
CA_CERT_FILE = "ca-cert.pem"
CA_KEY_FILE = "ca-key.pem"
CERT_CHAIN_FILE = "cert-chain.pem"
PRIVATE_KEY_FILE = "key.pem"
ROOT_CERT_FILE = "root-cert.pem"

WORKLOAD_CERT_TTL = dt.timedelta(hours=24)
MAX_WORKLOAD_CERT_TTL = dt.timedelta(days=90)
SELF_SIGNED_CA_CERT_TTL = dt.timedelta(days=3650)
RSA_KEY_SIZE = 2048
CLOCK_SKEW_GRACE = dt.timedelta(minutes=2)  # leaf NotBefore is backdated by this much


class CAError(Exception):
    """A signing request the CA refuses. ``kind`` is one of CSR, TTL, NOT_READY."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def generate_key(key_type: str = "RSA"):
    if key_type == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)
    if key_type == "ECDSA":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"key type {key_type!r}: expected RSA or ECDSA")


def key_to_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_pem_certs(data: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(data) if data.strip() else []


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(repr=False)
class KeyCertBundle:
    """The CA's signing certificate and key, the chain up to the root, and the roots to trust."""

    signing_cert: x509.Certificate
    signing_key: object = field(repr=False)
    cert_chain: list[x509.Certificate] = field(default_factory=list)  # intermediates above the signer
    root_certs: list[x509.Certificate] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"KeyCertBundle(signer={self.signing_cert.subject.rfc4514_string()!r}, key=<hidden>)"

    @property
    def root_pem(self) -> str:
        return b"".join(cert_to_pem(c) for c in self.root_certs).decode()

    def chain_pems(self) -> list[str]:
        """Signer, intermediates, root — what follows a leaf in a response (no duplicate root)."""
        chain = [self.signing_cert, *self.cert_chain]
        roots = [r for r in self.root_certs if r not in chain]
        return [cert_to_pem(c).decode() for c in (*chain, *roots)]

    def verify(self) -> None:
        """The key matches the certificate, and the chain leads to one of the roots."""
        public = self.signing_cert.public_key().public_bytes(serialization.Encoding.DER,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        own = self.signing_key.public_key().public_bytes(serialization.Encoding.DER,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo)
        if public != own:
            raise CAError("NOT_READY", "the CA private key does not match the CA certificate")
        top = ([self.signing_cert, *self.cert_chain])[-1]
        if not any(top.issuer == root.subject or top == root for root in self.root_certs):
            raise CAError("NOT_READY", "the CA certificate chain does not lead to the root certificate")


def self_signed_root(trust_domain: str, key_type: str = "RSA",
                     ttl: dt.timedelta = SELF_SIGNED_CA_CERT_TTL) -> KeyCertBundle:
    key = generate_key(key_type)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + ttl)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyCertBundle(cert, key, [], [cert])


class IstioCA:
    def __init__(self, bundle: KeyCertBundle, source: str, default_ttl: dt.timedelta = WORKLOAD_CERT_TTL,
                 max_ttl: dt.timedelta = MAX_WORKLOAD_CERT_TTL):
        bundle.verify()
        self.bundle = bundle
        self.source = source  # "self-signed (Secret istio-system/istio-ca-secret)", "plugged-in (DIR)"
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl

    def __repr__(self) -> str:
        return f"IstioCA(source={self.source!r})"

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def self_signed(cls, kube_client, namespace: str, trust_domain: str, key_type: str = "RSA") -> IstioCA:
        """Load the root from the ``istio-ca-secret`` Secret, or create both (``maybeCreateCA``)."""
        where = f"Secret {namespace}/{CA_SECRET}"
        secret = kube_client.get("secrets", CA_SECRET, namespace) if kube_client is not None else None
        if secret is not None:
            data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
            try:
                cert = load_pem_certs(data.get(CA_CERT_FILE, b""))[0]
                key = serialization.load_pem_private_key(data[CA_KEY_FILE], password=None)
            except (KeyError, IndexError, ValueError) as err:
                raise CAError("NOT_READY", f"{where}: cannot load the CA certificate and key ({err})") from err
            return cls(KeyCertBundle(cert, key, [], [cert]), f"self-signed, loaded from {where}")
        bundle = self_signed_root(trust_domain, key_type)
        if kube_client is not None:
            kube_client.create(build_ca_secret(namespace, bundle))
            return cls(bundle, f"self-signed, created and stored in {where}")
        return cls(bundle, "self-signed, in memory (no kube client)")

    @classmethod
    def plugged(cls, directory: str | Path) -> IstioCA:
        """A CA from ``cacerts`` files: ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem."""
        d = Path(directory)
        try:
            signing = load_pem_certs((d / CA_CERT_FILE).read_bytes())[0]
            key = serialization.load_pem_private_key((d / CA_KEY_FILE).read_bytes(), password=None)
            roots = load_pem_certs((d / ROOT_CERT_FILE).read_bytes())
            chain_file = d / CERT_CHAIN_FILE
            chain = load_pem_certs(chain_file.read_bytes()) if chain_file.exists() else []
        except (OSError, IndexError, ValueError) as err:
            raise CAError("NOT_READY", f"{d}: cannot load the plugged-in CA ({err})") from err
        # cert-chain.pem holds the signing cert first, then intermediates, as istio's tools write it
        intermediates = [c for c in chain if c != signing and c not in roots]
        return cls(KeyCertBundle(signing, key, intermediates, roots), f"plugged-in, from {d}")

    # -- signing --------------------------------------------------------------------------------
    def sign(self, csr_pem: str | bytes, subject_ids: list[str], ttl_seconds: int = 0,
             check_lifetime: bool = True) -> x509.Certificate:
        """A leaf certificate for the CSR's public key, whose only SANs are ``subject_ids``."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode() if isinstance(csr_pem, str) else csr_pem)
            valid = csr.is_signature_valid
            csr.public_key()
        except (ValueError, UnsupportedAlgorithm) as err:
            raise CAError("CSR", f"the CSR is not a PEM certificate request with a usable key ({err})") from err
        if not valid:
            raise CAError("CSR", "the CSR signature does not verify")
        if check_lifetime and ttl_seconds > self.max_ttl.total_seconds():  # compared before any date arithmetic
            raise CAError("TTL", f"requested TTL {_ttl_text(ttl_seconds)} is greater than the max allowed TTL "
                                 f"{self.max_ttl}")
        try:
            ttl = dt.timedelta(seconds=ttl_seconds) if ttl_seconds > 0 else self.default_ttl
            _now() + ttl  # noqa: B018 -- a date past year 9999 cannot be put in a certificate
        except OverflowError:
            raise CAError("TTL", f"requested TTL {ttl_seconds}s is too large") from None
        if not subject_ids:
            raise CAError("CSR", "no identity to put in the certificate")
        now = _now()
        sans = [x509.UniformResourceIdentifier(s) if "://" in s else x509.DNSName(s) for s in subject_ids]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([])).issuer_name(self.bundle.signing_cert.subject)
            .public_key(csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW_GRACE).not_valid_after(now + ttl)
            .add_extension(x509.SubjectAlternativeName(sans), critical=True)  # critical: the subject is empty
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.bundle.signing_cert.public_key()), critical=False)
            .sign(self.bundle.signing_key, hashes.SHA256())
        )
        return cert

    def sign_with_chain(self, csr_pem: str | bytes, subject_ids: list[str], ttl_seconds: int = 0,
                        check_lifetime: bool = True) -> list[str]:
        """``[leaf, signer, intermediates..., root]`` as PEM strings: what CreateCertificate returns."""
        leaf = self.sign(csr_pem, subject_ids, ttl_seconds, check_lifetime)
        return [cert_to_pem(leaf).decode(), *self.bundle.chain_pems()]

    @property
    def root_pem(self) -> str:
        return self.bundle.root_pem


def build_ca_secret(namespace: str, bundle: KeyCertBundle) -> dict:
    """The ``istio-ca-secret`` Secret as istiod writes it (``BuildSecret``): five keys, three empty."""
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {
        "apiVersion": "v1", "kind": "Secret", "type": CA_SECRET_TYPE,
        "metadata": {"name": CA_SECRET, "namespace": namespace},
        "data": {
            CA_CERT_FILE: b64(cert_to_pem(bundle.signing_cert)),
            CA_KEY_FILE: b64(key_to_pem(bundle.signing_key)),
            CERT_CHAIN_FILE: "", PRIVATE_KEY_FILE: "", ROOT_CERT_FILE: "",
        },
    }


def make_csr(identity: str, key_type: str = "RSA"):
    """A CSR for ``identity`` and its new private key, as pilot-agent makes one (for tests and the agent)."""
    key = generate_key(key_type)
    san = x509.UniformResourceIdentifier(identity) if "://" in identity else x509.DNSName(identity)
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([san]), critical=True).sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key


def verify_chain(leaf: x509.Certificate, chain: list[x509.Certificate], roots: list[x509.Certificate]) -> None:
    """Check each certificate is signed by the next, ending at one of ``roots``; raise CAError if not."""
    path = [leaf, *chain]
    for child, parent in zip(path, path[1:], strict=False):
        _check_signed_by(child, parent)
    top = path[-1]
    if top not in roots:
        issuer = next((r for r in roots if r.subject == top.issuer), None)
        if issuer is None:
            raise CAError("CSR", "the chain does not end at a trusted root")
        _check_signed_by(top, issuer)


def _check_signed_by(child: x509.Certificate, parent: x509.Certificate) -> None:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature) as err:
        raise CAError("CSR", f"{child.subject.rfc4514_string() or 'leaf'} is not signed by "
                             f"{parent.subject.rfc4514_string()}: {err}") from err


def _ttl_text(seconds: int) -> str:
    try:
        return str(dt.timedelta(seconds=seconds))
    except OverflowError:
        return f"{seconds}s"
