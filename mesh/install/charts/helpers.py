"""What every chart shares: names with the revision suffix, the operator's labels, object metadata,
Helm's number printing, env entries, image names, RBAC bindings and the HPA; and the RBAC rules
(``rbac.yaml``). Go: the charts' ``_helpers.tpl`` and repeated template snippets under
https://github.com/istio/istio/tree/1.19.0/manifests/charts.
"""

from __future__ import annotations

import yaml

from mesh.install import iop as iopmod

RELEASE = "istio"
# The operator's component names (``operator.istio.io/component`` labels and render()'s keys).
BASE, PILOT, INGRESS, EGRESS = "Base", "Pilot", "IngressGateways", "EgressGateways"
RULES = yaml.safe_load(iopmod._data_text("rbac.yaml"))


def suffixed(name: str, values: dict) -> str:
    """``istiod`` or ``istiod-<revision>``: the charts' ``{{- if not (eq .Values.revision "") }}`` suffix."""
    return f"{name}-{values['revision']}" if values["revision"] else name


def revision(values: dict) -> str:
    return values["revision"] or "default"


def owner_name(values: dict) -> str:
    return values.get("ownerName") or "unknown"


def component_labels(values: dict, component: str) -> dict:
    return {"istio.io/rev": revision(values), "install.operator.istio.io/owning-resource": owner_name(values),
            "operator.istio.io/component": component}


def object_meta(name: str, namespace: str | None, labels: dict, annotations: dict | None = None) -> dict:
    meta = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = dict(sorted(labels.items()))
    if annotations:
        meta["annotations"] = dict(sorted(annotations.items()))
    return meta


def number_text(value: object) -> str:
    """A number as Helm's ``{{ }}`` prints it: 1.0 → "1", 0.5 → "0.5"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def field_env(name: str, path: str, api_version: bool = True) -> dict:
    ref = {"apiVersion": "v1", "fieldPath": path} if api_version else {"fieldPath": path}
    return {"name": name, "valueFrom": {"fieldRef": ref}}


def resource_env(name: str, resource: str) -> dict:
    return {"name": name, "valueFrom": {"resourceFieldRef": {"resource": resource}}}


def image_name(values: dict, image: str, default: str, hub: str = "", tag: str = "") -> str:
    if "/" in image:
        return image
    glob = values["global"]
    variant = f"-{glob['variant']}" if glob.get("variant") else ""
    return f"{hub or glob['hub']}/{image or default}:{tag or glob['tag']}{variant}"


def binding(kind: str, name: str, role: str, sa: str, sa_ns: str, labels: dict, ns: str | None = None) -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": object_meta(name, ns, labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind.removesuffix("Binding"), "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": sa_ns}]}


def hpa(name: str, ns: str, labels: dict, minimum: int, maximum: int, cpu: int) -> dict:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": object_meta(name, ns, labels),
            "spec": {"maxReplicas": maximum, "minReplicas": minimum,
                     "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}}}]}}
