"""mesh.webhooks — istiod's admission webhooks (Go: https://github.com/istio/istio/tree/1.19.0/pkg/webhooks).

``validation``: the ``/validate`` endpoint of the config validation webhook.
"""
