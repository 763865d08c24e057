"""The renderer: an effective IstioOperator in, the Kubernetes objects of each component out.

Istio renders each component's Helm chart with the values the translator made
(https://github.com/istio/istio/blob/1.19.0/operator/pkg/controlplane/control_plane.go#L106-L122
walks the components; https://github.com/istio/istio/blob/1.19.0/operator/pkg/component/component.go#L286-L359
renders one chart and then lays the component's ``k8s`` settings over the result). mesh writes
each chart template as a Python function (``mesh.install.charts``: ``base``, ``istiod``, ``gateway``) that builds the same object from the same values — the
facts (names, labels, ports, env, probes, rules) are the charts' at 1.19.0, one function per
template file, linked in its docstring. ``istioctl install`` and ``mesh operator`` both call
``render()``: one renderer, two front ends, as in Istio.

What is rendered, by component:

* ``Base``: the ``istio-system`` Namespace (istioctl creates it; the charts assume it), the Istio
  CRDs and the ``istio-reader-service-account``;
* ``Pilot``: istiod's ServiceAccount and RBAC, the ``istio`` and ``istio-sidecar-injector``
  ConfigMaps, the Deployment, Service, PodDisruptionBudget and HorizontalPodAutoscaler, the
  injection MutatingWebhookConfiguration and the validation ValidatingWebhookConfiguration;
* ``IngressGateways`` / ``EgressGateways``: per gateway a ServiceAccount, an SDS Role and
  RoleBinding, a Deployment, a Service, a PodDisruptionBudget and (autoscaling) an HPA.

Simplifications, named: the CRDs carry no OpenAPI schema (``x-kubernetes-preserve-unknown-fields``;
Istio's ``crd-all.gen.yaml`` has the full one); the telemetry-v2 EnvoyFilters, the
``istio-revision-tag-default`` webhook istioctl adds after installing, and the CNI, ztunnel and
remote-istiod components are not rendered; the injector ConfigMap's ``config`` is mesh's Jinja2
rewrite of the chart's templates (``mesh.inject``), and its ``values`` keep the keys those
templates read.
"""

from __future__ import annotations

from mesh.install import iop as iopmod
from mesh.install import overlay
from mesh.install.charts.base import crds, namespace, reader_service_account
from mesh.install.charts.gateway import gateway
from mesh.install.charts.helpers import BASE, EGRESS, INGRESS, PILOT, suffixed
from mesh.install.charts.istiod import istiod
from mesh.kube import kinds

COMPONENT_ORDER = (BASE, PILOT, INGRESS, EGRESS)  # each waits for the one before (ComponentDependencies)


def render(iop: dict, owner: str = "") -> dict[str, list[dict]]:
    """Component name → its objects, for the components the IstioOperator enables.

    ``owner`` is the IstioOperator's name when the operator renders (the charts' ``ownerName``);
    ``istioctl manifest generate`` leaves it empty and the charts write ``unknown``.
    """
    values = iopmod.values(iop, owner)
    ns = values["global"]["istioNamespace"]
    spec = iop.get("spec") or {}
    out: dict[str, list[dict]] = {}
    if iopmod.enabled(iop, "base"):
        out[BASE] = [namespace(ns), *crds(), reader_service_account(values)]
    if iopmod.enabled(iop, "pilot"):
        objects = istiod(values, ns)
        component = (spec.get("components") or {}).get("pilot") or {}
        out[PILOT] = overlay.apply_k8s(objects, component.get("k8s") or {}, "Deployment", suffixed("istiod", values),
                                       "discovery", "components.pilot.k8s")
        if BASE not in out:
            out[PILOT].insert(0, namespace(ns))
    for which, component_name in ((iopmod.INGRESS, INGRESS), (iopmod.EGRESS, EGRESS)):
        objects = []
        for i, gw in enumerate(iopmod.gateways(iop, which)):
            gw_ns = gw.get("namespace") or ns
            rendered = gateway(values, gw["name"], gw_ns, component_name)
            objects += overlay.apply_k8s(rendered, gw.get("k8s") or {}, "Deployment", gw["name"], "istio-proxy",
                                         f"components.{which}[{i}].k8s")
        if objects:
            out[component_name] = objects
    return out


def flatten(rendered: dict[str, list[dict]]) -> list[dict]:
    """Every object, components in dependency order, each component's objects in apply order."""
    return [obj for name in COMPONENT_ORDER for obj in sort_for_apply(rendered.get(name, []))]


# istioctl applies namespaces, then CRDs, then the rest sorted by kind priority
# (https://github.com/istio/istio/blob/1.19.0/operator/pkg/object/objects.go#L430-L473). mesh
# keeps that order except that webhook configurations go last: a webhook pointing at an istiod
# that does not exist yet would fail (the injector's failurePolicy is Fail) every pod created
# in between.
_PRIORITY = {
    ("", "Namespace"): -2000,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): -1000,
    ("", "ServiceAccount"): 1, ("rbac.authorization.k8s.io", "ClusterRole"): 1,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): 2,
    ("rbac.authorization.k8s.io", "Role"): 1, ("rbac.authorization.k8s.io", "RoleBinding"): 2,
    ("", "ConfigMap"): 100, ("", "Secret"): 100,
    ("apps", "Deployment"): 1000, ("policy", "PodDisruptionBudget"): 1000,
    ("autoscaling", "HorizontalPodAutoscaler"): 1001,
    ("", "Service"): 10000,
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): 20000,
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): 20001,
}


def apply_priority(obj: dict) -> int:
    group, _ = kinds.split_api_version(obj.get("apiVersion", ""))
    return _PRIORITY.get((group, obj.get("kind", "")), 1000)


def sort_for_apply(objects: list[dict]) -> list[dict]:
    return sorted(objects, key=apply_priority)  # stable: a component's own order breaks ties
