"""A Kubernetes API server over traces, for kubectl, the ``kubernetes`` client and ``LiveClient``.

Modules, one job each: ``store`` (objects, resourceVersions, history), ``discovery``
(``/version``, ``/api``, ``/apis``), ``resources`` (list/get/create/update/patch/delete),
``watch`` (watch streams), ``tables`` (kubectl's columns), ``patch`` (patch types),
``admission`` (calling webhooks), ``openapi`` (what ``kubectl apply`` checks), ``certs``
(HTTPS and kubeconfig), ``errors`` (Status answers), and ``server`` (``ApiServer``, tying
them to aiohttp and to a trace replayed on a clock).

kube-apiserver is not part of Istio; istiod is one of its clients, through the informers of
https://github.com/istio/istio/blob/1.19.0/pkg/kube/client.go#L98-L144.
"""

from mesh.kube.apiserver.server import ApiServer

__all__ = ["ApiServer"]
