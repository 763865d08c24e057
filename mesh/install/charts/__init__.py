"""The charts of ``manifests/charts`` as Python, one module per chart (``render.py`` walks them).

``base`` (https://github.com/istio/istio/tree/1.19.0/manifests/charts/base), ``istiod``
(https://github.com/istio/istio/tree/1.19.0/manifests/charts/istio-control/istio-discovery) and
``gateway`` (https://github.com/istio/istio/tree/1.19.0/manifests/charts/gateways, the ingress and
egress charts the operator renders); ``helpers`` holds what the charts' ``_helpers.tpl`` and the
shared snippets give every chart.
"""
