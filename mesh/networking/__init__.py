"""mesh.networking: turn services and Istio config into Envoy resources (clusters, endpoints,
listeners, routes) — istiod's ``pilot/pkg/networking/core/v1alpha3``."""
