"""Stage 6, maybeCreateCA, and the CA's gRPC service (``RunCA``).

Go: ``maybeCreateCA`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L1136-L1159
calls ``createIstioCA`` (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/istio_ca.go#L417-L480):
plugged-in files, or a self-signed root kept in the ``istio-ca-secret`` Secret (created on first
start, reused after). ``RunCA`` (istio_ca.go#L148-L195) puts ``IstioCertificateService`` on the
secure gRPC server with its authenticators; mesh calls ``run_ca`` from stage 11, where that server
is made, instead of at the end of ``NewServer``.

With a CA, istiod also runs the namespace controller that writes the root into every namespace.
It is not made here: stage 7 registers the multicluster handler (servicecontroller.go#L80-L90),
which, once ``Start`` runs the secret controller and a cluster is added, starts it for that cluster
under the ``istio-namespace-controller-election`` lease
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/serviceregistry/kube/controller/multicluster.go#L286-L307).
The self-signed CA also runs a root-certificate rotator
(https://github.com/istio/istio/blob/1.19.0/security/pkg/pki/ca/ca.go#L328-L333), which re-issues
the root in ``istio-ca-secret`` when it nears expiry.

Simplifications, named: mesh starts the namespace controller in stage 6, at once, with no leader
election (one replica; replay informers are synced on creation, so there is nothing to wait for);
it has no root-certificate rotator (a root lives ten years, longer than any trace).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mesh.kube.client import ReplayClient
from mesh.security.ca import IstioCA
from mesh.security.caserver import CertificateService, ClientCertAuthenticator, KubeJWTAuthenticator
from mesh.security.namespace_controller import NamespaceController
from mesh.security.proto.ca_pb2_grpc import add_IstioCertificateServiceServicer_to_server
from mesh.security.tokens import LiveTokenReviewer, ServiceAccountTokens

if TYPE_CHECKING:
    from mesh.bootstrap.server import Server

log = logging.getLogger("mesh.bootstrap")


def maybe_create_ca(server: Server) -> None:
    args = server.args
    if args.cacerts_dir:
        server.ca = IstioCA.plugged(args.cacerts_dir)
    else:
        server.ca = IstioCA.self_signed(server.kube_client, args.namespace, server.environment.mesh()["trustDomain"],
                                        key_type=args.ca_key_type)
    log.info("CA ready: %s", server.ca.source)
    if server.kube_client is not None:
        server.namespace_controller = NamespaceController(server.kube_client, lambda: server.ca.root_pem)
        server.namespace_controller.run()


def token_reviewer(server: Server):
    """``server.token_reviewer`` if one was handed in; else the cluster's: a live cluster's TokenReview
    API, or for a replayed cluster ``server.service_account_tokens``, which issues and reviews tokens."""
    if server.token_reviewer is None and server.kube_client is not None:
        if isinstance(server.kube_client, ReplayClient):  # no TokenReview API: mesh issues and reviews tokens
            server.service_account_tokens = ServiceAccountTokens(server.kube_client)
            server.token_reviewer = server.service_account_tokens
        else:  # a live cluster (LiveClient): ask its API server
            server.token_reviewer = LiveTokenReviewer(server.kube_client)
    return server.token_reviewer


def run_ca(server: Server) -> None:
    """``RunCA``: the certificate service on the secure gRPC server. Authenticators, in Istio's order:
    the client certificate, then a reviewed service-account token."""
    grpc_server = server.secure_grpc_server
    authenticators = [ClientCertAuthenticator(grpc_server.peer_certificate)]
    reviewer = token_reviewer(server)
    if reviewer is not None:
        authenticators.append(KubeJWTAuthenticator(reviewer, lambda: server.environment.mesh()["trustDomain"]))
    server.ca_service = CertificateService(server.ca, authenticators)
    add_IstioCertificateServiceServicer_to_server(server.ca_service, grpc_server)
