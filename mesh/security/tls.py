"""TLS for istiod's own ports: an ``ssl.SSLContext`` from istiod's certificate, and the identity
of a verified peer.

Go: the ``tls.Config`` of the secure gRPC server (serving cert, ``VerifyClientCertIfGiven``
against the mesh roots, TLS 1.2 at least)
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L741-L754 ; the same
for the webhook server without client certificates
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/webhook.go#L56-L65 ; and how a
caller's identities are read off its verified leaf (``ExtractIDs``)
https://github.com/istio/istio/blob/1.19.0/security/pkg/server/ca/authenticate/cert_authenticator.go#L56-L81.

``ssl`` can only load a key from a file, so the key is written to a private temporary
directory, loaded and deleted at once; it never reaches a log or a ``repr``.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass

from cryptography import x509

from mesh.security.istiod_cert import IstiodCert


def server_context(cert: IstiodCert, client_roots_pem: str | None = None,
                   alpn: list[str] | None = None) -> ssl.SSLContext:
    """A server context serving ``cert``; with ``client_roots_pem``, a client certificate is asked
    for and, when one is sent, verified against those roots (a bad one fails the handshake)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="mesh-tls-") as d:  # created 0700
        cert_path, key_path = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        with open(cert_path, "w") as f:
            f.write(cert.chain_pem)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(cert.key_pem)
        ctx.load_cert_chain(cert_path, key_path)
    if client_roots_pem:
        ctx.verify_mode = ssl.CERT_OPTIONAL  # Go's tls.VerifyClientCertIfGiven
        ctx.load_verify_locations(cadata=client_roots_pem)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


@dataclass(frozen=True)
class PeerCertificate:
    """A client certificate that passed verification: its SPIFFE identities and subject."""

    identities: tuple[str, ...]  # URI SANs, normally one spiffe://... identity
    subject: str
    serial: int

    @classmethod
    def from_der(cls, der: bytes) -> PeerCertificate:
        cert = x509.load_der_x509_certificate(der)
        return cls(uri_sans(cert), cert.subject.rfc4514_string(), cert.serial_number)


def uri_sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
