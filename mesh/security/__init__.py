"""Certificates: the CA that signs workload identities, trust bundles, istiod's own certificate.

istio/istio: ``security/pkg/pki`` (the CA), ``security/pkg/server/ca`` (the CSR service),
``pilot/pkg/trustbundle``, and the bootstrap glue in ``pilot/pkg/bootstrap/{istio_ca,certcontroller}.go``.
https://github.com/istio/istio/tree/1.19.0/security/pkg
"""
