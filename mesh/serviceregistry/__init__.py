"""Service registries: where istiod learns which services exist and which endpoints serve them.

Go: https://github.com/istio/istio/tree/1.19.0/pilot/pkg/serviceregistry — ``kube`` (Services,
EndpointSlices, Pods and Nodes of a cluster), ``serviceentry`` (ServiceEntry and WorkloadEntry
config) and ``aggregate`` (one ``ServiceDiscovery`` over all of them). xDS generators only ever
see the model (``mesh.model.service``) these produce.
"""
