"""Stage 10, initIstiodCerts: istiod's own serving certificate.

Go: ``initIstiodCerts`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L939-L975
picks the DNS names (the discovery address's host and the istiod Service names, ``getDNSNames``),
then either watches the certificate files it was given (``initCertificateWatches``) or has the
mesh CA sign one (``initDNSCerts``,
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/certcontroller.go#L58-L155). The
names and the signing are in ``mesh.security.istiod_cert``.

Simplification, named: the certificate is made once; istiod also rotates it and reloads changed
files (``watchRootCertAndGenKeyCert``, ``reloadIstiodCert``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mesh.security.istiod_cert import dns_names, load_istiod_cert, sign_istiod_cert

if TYPE_CHECKING:
    from mesh.bootstrap.server import Server

log = logging.getLogger("mesh.bootstrap")


def init_istiod_certs(server: Server) -> None:
    args = server.args
    host = server.environment.mesh()["defaultConfig"]["discoveryAddress"].rsplit(":", 1)[0]
    if args.tls_cert_file and args.tls_key_file:
        server.istiod_cert = load_istiod_cert(args.tls_cert_file, args.tls_key_file)
    elif server.ca is not None:
        server.istiod_cert = sign_istiod_cert(server.ca, dns_names(host, args.namespace, args.revision))
    log.info("istiod certificate: %s", server.istiod_cert)
