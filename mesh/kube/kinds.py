"""The Kubernetes resource kinds mesh knows: group, version, plural, scope and short names.

istiod gets this from its generated schema collections
(https://github.com/istio/istio/blob/1.19.0/pkg/config/schema/collections/collections.gen.go);
here it is one small table. The replay client, the live client, the trace validator and the
replay API server all look kinds up here, so there is one answer to "what is the plural of
EndpointSlice and is it namespaced?".

Objects are identified by ``ObjectKey(group, kind, namespace, name)``: the version is left out
on purpose, because ``networking.istio.io/v1alpha3`` and ``/v1beta1`` VirtualServices are the
same stored object seen through two API versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class Kind:
    group: str  # "" for the core group
    version: str  # the preferred (storage) version
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()  # every served version, preferred first

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def served_versions(self) -> tuple[str, ...]:
        return self.versions or (self.version,)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    def __str__(self) -> str:
        return f"{self.kind}.{self.group or 'core'}"


class ObjectKey(NamedTuple):
    group: str
    kind: str
    namespace: str  # "" for cluster-scoped objects
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


# The versions Istio 1.19's CRDs serve, per kind
# (https://github.com/istio/istio/blob/1.19.0/manifests/charts/base/crds/crd-all.gen.yaml, every
# version with ``served: true``): networking.istio.io serves v1alpha3 (the storage version) and
# v1beta1, except EnvoyFilter (v1alpha3 only) and ProxyConfig (v1beta1 only); security.istio.io
# serves v1 beside v1beta1 for AuthorizationPolicy and RequestAuthentication, not for
# PeerAuthentication. Other versions are refused, as kube-apiserver refuses them (networking v1
# arrived in 1.22).
_ISTIO_NET = ("v1beta1", "v1alpha3")
_SECURITY_V1 = ("v1beta1", "v1")
_GATEWAY_API = ("v1beta1", "v1alpha2", "v1")

KINDS: tuple[Kind, ...] = (
    # core/v1
    Kind("", "v1", "Namespace", "namespaces", namespaced=False, short_names=("ns",)),
    Kind("", "v1", "Node", "nodes", namespaced=False, short_names=("no",)),
    Kind("", "v1", "Pod", "pods", short_names=("po",)),
    Kind("", "v1", "Service", "services", short_names=("svc",)),
    Kind("", "v1", "Endpoints", "endpoints", short_names=("ep",)),
    Kind("", "v1", "ServiceAccount", "serviceaccounts", short_names=("sa",)),
    Kind("", "v1", "ConfigMap", "configmaps", short_names=("cm",)),
    Kind("", "v1", "Secret", "secrets"),
    # apps/v1
    Kind("apps", "v1", "Deployment", "deployments", short_names=("deploy",)),
    Kind("apps", "v1", "ReplicaSet", "replicasets", short_names=("rs",)),
    Kind("apps", "v1", "StatefulSet", "statefulsets", short_names=("sts",)),
    Kind("apps", "v1", "DaemonSet", "daemonsets", short_names=("ds",)),
    Kind("batch", "v1", "Job", "jobs"),
    Kind("batch", "v1", "CronJob", "cronjobs", short_names=("cj",)),
    Kind("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", short_names=("pdb",)),
    Kind("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", short_names=("hpa",)),
    # discovery and networking
    Kind("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
    Kind("networking.k8s.io", "v1", "Ingress", "ingresses", short_names=("ing",)),
    Kind("networking.k8s.io", "v1", "IngressClass", "ingressclasses", namespaced=False),
    # RBAC
    Kind("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False),
    Kind("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False),
    Kind("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    Kind("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    # admission
    Kind("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration",
         "mutatingwebhookconfigurations", namespaced=False),
    Kind("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration",
         "validatingwebhookconfigurations", namespaced=False),
    Kind("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
         namespaced=False, short_names=("crd", "crds")),
    # networking.istio.io
    Kind("networking.istio.io", "v1beta1", "VirtualService", "virtualservices", short_names=("vs",),
         versions=_ISTIO_NET),
    Kind("networking.istio.io", "v1beta1", "DestinationRule", "destinationrules", short_names=("dr",),
         versions=_ISTIO_NET),
    Kind("networking.istio.io", "v1beta1", "Gateway", "gateways", short_names=("gw",), versions=_ISTIO_NET),
    Kind("networking.istio.io", "v1beta1", "ServiceEntry", "serviceentries", short_names=("se",),
         versions=_ISTIO_NET),
    Kind("networking.istio.io", "v1beta1", "Sidecar", "sidecars", versions=_ISTIO_NET),
    Kind("networking.istio.io", "v1beta1", "WorkloadEntry", "workloadentries", short_names=("we",),
         versions=_ISTIO_NET),
    Kind("networking.istio.io", "v1beta1", "WorkloadGroup", "workloadgroups", short_names=("wg",),
         versions=_ISTIO_NET),
    Kind("networking.istio.io", "v1alpha3", "EnvoyFilter", "envoyfilters", versions=("v1alpha3",)),
    Kind("networking.istio.io", "v1beta1", "ProxyConfig", "proxyconfigs", versions=("v1beta1",)),
    # security.istio.io
    Kind("security.istio.io", "v1beta1", "PeerAuthentication", "peerauthentications", short_names=("pa",)),
    Kind("security.istio.io", "v1beta1", "AuthorizationPolicy", "authorizationpolicies", versions=_SECURITY_V1),
    Kind("security.istio.io", "v1beta1", "RequestAuthentication", "requestauthentications",
         short_names=("ra",), versions=_SECURITY_V1),
    Kind("telemetry.istio.io", "v1alpha1", "Telemetry", "telemetries", short_names=("telemetry",)),
    Kind("extensions.istio.io", "v1alpha1", "WasmPlugin", "wasmplugins"),
    Kind("install.istio.io", "v1alpha1", "IstioOperator", "istiooperators", short_names=("iop", "io")),
    # Gateway API (gateway.networking.k8s.io), the versions Istio 1.19 reads
    Kind("gateway.networking.k8s.io", "v1beta1", "GatewayClass", "gatewayclasses", namespaced=False,
         short_names=("gc",), versions=_GATEWAY_API),
    Kind("gateway.networking.k8s.io", "v1beta1", "Gateway", "gateways", short_names=("gtw",),
         versions=_GATEWAY_API),
    Kind("gateway.networking.k8s.io", "v1beta1", "HTTPRoute", "httproutes", versions=_GATEWAY_API),
    Kind("gateway.networking.k8s.io", "v1alpha2", "TCPRoute", "tcproutes", versions=("v1alpha2",)),
    Kind("gateway.networking.k8s.io", "v1alpha2", "TLSRoute", "tlsroutes", versions=("v1alpha2",)),
    Kind("gateway.networking.k8s.io", "v1alpha2", "GRPCRoute", "grpcroutes", versions=("v1alpha2",)),
    Kind("gateway.networking.k8s.io", "v1beta1", "ReferenceGrant", "referencegrants", short_names=("refgrant",),
         versions=("v1beta1", "v1alpha2")),
)

_BY_GROUP_KIND = {(k.group, k.kind): k for k in KINDS}
_BY_GROUP_PLURAL = {(k.group, k.plural): k for k in KINDS}


def split_api_version(api_version: str) -> tuple[str, str]:
    """``"apps/v1"`` → ``("apps", "v1")``; ``"v1"`` → ``("", "v1")``."""
    group, _, version = api_version.rpartition("/")
    return group, version


def lookup(group: str, kind: str) -> Kind | None:
    return _BY_GROUP_KIND.get((group, kind))


def lookup_plural(group: str, plural: str) -> Kind | None:
    return _BY_GROUP_PLURAL.get((group, plural))


def for_object(obj: dict) -> Kind | None:
    """The Kind of an object, from its apiVersion and kind; None when mesh does not know it."""
    group, _ = split_api_version(obj.get("apiVersion", ""))
    return lookup(group, obj.get("kind", ""))


def resolve(name: str) -> Kind | None:
    """Find a kind the way kubectl does: by plural, singular, short name or Kind, optionally
    qualified by group (``vs``, ``virtualservices``, ``gateways.networking.istio.io``)."""
    resource, _, group = name.partition(".")
    resource = resource.lower()
    candidates = [k for k in KINDS if not group or k.group == group]
    for k in candidates:
        if resource in (k.plural, k.singular, *k.short_names):
            return k
    return None


def object_key(obj: dict) -> ObjectKey:
    group, _ = split_api_version(obj.get("apiVersion", ""))
    meta = obj.get("metadata") or {}
    return ObjectKey(group, obj.get("kind", ""), meta.get("namespace", "") or "", meta.get("name", ""))
