"""Certificates: the CA that signs workload identities, istiod's own certificate.

istio/istio: ``security/pkg/pki`` (the CA), ``security/pkg/server/ca`` (the CSR service); the
bootstrap glue of ``pilot/pkg/bootstrap/{istio_ca,certcontroller}.go`` is in ``mesh.bootstrap``,
and the workload trust bundle (``pilot/pkg/trustbundle``, which the model holds) is ``mesh.trustbundle``.
https://github.com/istio/istio/tree/1.19.0/security/pkg
"""
