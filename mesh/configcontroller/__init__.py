"""istiod's config controllers: where Istio config comes from (``pilot/pkg/config``).

https://github.com/istio/istio/tree/1.19.0/pilot/pkg/config — ``kube/crdclient`` (``crdclient.py``:
Istio CRDs through the kube client), ``file`` (``filesource.py``: a directory of YAML),
``aggregate`` (``aggregate.py``: many stores as one), ``kube/ingress`` (``ingress.py``) and
``kube/gateway`` (``gateway_api/``: Kubernetes objects converted to Gateways and VirtualServices).

The name follows istiod's own: ``initConfigController``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/configcontroller.go#L61-L133) builds
these and keeps them as ``s.configController``. They sit *above* ``mesh.model`` (they implement its
``ConfigStore`` and yield its ``Config``), while ``mesh.config`` is Istio's ``pkg/config`` (mesh
config, networks, hosts, validation) and sits *below* the model — the same split as in istio/istio,
where ``pilot/pkg/config`` imports ``pilot/pkg/model`` and ``pkg/config`` imports neither.
"""
