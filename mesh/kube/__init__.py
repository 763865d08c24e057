"""Kubernetes access, as istio's ``pkg/kube``: kinds, traces, informers, the replay and live clients.

https://github.com/istio/istio/tree/1.19.0/pkg/kube
"""
