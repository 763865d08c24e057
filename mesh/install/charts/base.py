"""The ``base`` chart: the ``istio-system`` Namespace, the Istio CRDs and the reader ServiceAccount.

Go: https://github.com/istio/istio/tree/1.19.0/manifests/charts/base (see ``mesh.install.render``
for what is simplified).
"""

from __future__ import annotations

from mesh.install.charts.helpers import (
    RELEASE,
    object_meta,
)
from mesh.kube import kinds


def namespace(name: str) -> dict:
    """The Istio namespace; istioctl creates it before applying anything
    (https://github.com/istio/istio/blob/1.19.0/operator/pkg/helmreconciler/reconciler.go#L150-L160)."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def crds() -> list[dict]:
    """One CRD per Istio kind mesh knows (base chart ``crds.yaml`` → ``crd-all.gen.yaml`` and
    ``crd-operator.yaml``), https://github.com/istio/istio/blob/1.19.0/manifests/charts/base/templates/crds.yaml#L1-L4.
    Served versions as Istio 1.19 serves them; no schema (see the module docstring)."""
    out = []
    for kind in kinds.KINDS:
        if not kind.group.endswith("istio.io"):
            continue
        versions = [v for v in kind.served_versions if not (kind.group == "networking.istio.io" and v == "v1")]
        storage = "v1alpha3" if "v1alpha3" in versions else kind.version
        out.append({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": object_meta(f"{kind.plural}.{kind.group}", None,
                              {"app": "istio-pilot", "chart": "istio", "heritage": "Tiller", "release": RELEASE}),
            "spec": {
                "group": kind.group,
                "names": {"kind": kind.kind, "listKind": f"{kind.kind}List", "plural": kind.plural,
                          "singular": kind.singular, **({"shortNames": list(kind.short_names)} if kind.short_names else {}),
                          "categories": ["istio-io", kind.group.split(".")[0] + "-istio-io"]},
                "scope": "Namespaced" if kind.namespaced else "Cluster",
                "versions": [{"name": v, "served": True, "storage": v == storage,
                              "subresources": {"status": {}},
                              "schema": {"openAPIV3Schema": {"type": "object",
                                                             "x-kubernetes-preserve-unknown-fields": True}}}
                             for v in sorted(versions)],
            },
        })
    return out


def reader_service_account(values: dict) -> dict:
    """https://github.com/istio/istio/blob/1.19.0/manifests/charts/base/templates/reader-serviceaccount.yaml#L1-L16"""
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": object_meta("istio-reader-service-account", values["global"]["istioNamespace"],
                              {"app": "istio-reader", "release": RELEASE})}
