"""The Kubernetes service registry (``pilot/pkg/serviceregistry/kube``)."""
