"""Istio's ``pkg/config``: what a config *is*, below the model.

https://github.com/istio/istio/tree/1.19.0/pkg/config — ``mesh`` (``mesh.py``: MeshConfig defaults,
merge and watcher), ``meshnetworks.py``, ``host`` (``host.py``: host name matching) and
``validation`` (``validation.py``). Nothing here imports ``mesh.model``; where config comes from
(CRDs, files, Ingress, Gateway API) is ``mesh.configcontroller``, above the model.
"""
