"""Tables for the install notebook (00b): profiles side by side, what an install creates and why,
what the operator did. Display only; the logic is in ``mesh/install``. No Go counterpart
(istioctl prints similar summaries: https://github.com/istio/istio/blob/1.19.0/operator/cmd/mesh/profile-diff.go#L84-L104).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mesh.install import iop as iopmod
from mesh.install import render
from mesh.teach.views import TextView, short, table

# Why istiod (or a gateway) needs each object an install creates: (kind, name prefix) -> reason.
WHY = (
    ("Namespace", "", "where the control plane lives; the root namespace of mesh-wide config"),
    ("CustomResourceDefinition", "", "the API server must serve VirtualService & co. before istiod watches them"),
    ("ServiceAccount", "istiod", "istiod's identity; its RBAC is granted to it"),
    ("ServiceAccount", "istio-reader", "for a remote istiod reading this cluster (multicluster)"),
    ("ServiceAccount", "", "the gateway pod's identity (and its SPIFFE id)"),
    ("ClusterRole", "istiod-clusterrole", "read pods/services/endpoints/Istio config, patch webhooks (stage 7, 12)"),
    ("ClusterRole", "istiod-gateway-controller", "create Deployments/Services for Gateway API gateways"),
    ("ClusterRole", "istio-reader", "the read-only subset, for the reader ServiceAccount"),
    ("ClusterRoleBinding", "", "grants the ClusterRole of the same name"),
    ("Role", "istiod", "istio-ca-secret (stage 6) and leader-election leases, in istio-system only"),
    ("Role", "", "a gateway reads its TLS certificates from Secrets (SDS)"),
    ("RoleBinding", "", "grants the Role of the same name"),
    ("ConfigMap", "istio-sidecar-injector", "injection templates and values (stage 13)"),
    ("ConfigMap", "istio", "MeshConfig and MeshNetworks (stages 2 and 3)"),
    ("Deployment", "istiod", "pilot-discovery itself"),
    ("Deployment", "", "a router-mode Envoy that istiod configures over xDS"),
    ("Service", "istiod", "xDS 15010 and 15012, webhooks 443->15017, metrics 15014"),
    ("Service", "", "the gateway's address for traffic entering or leaving the mesh"),
    ("PodDisruptionBudget", "", "keeps one replica up while nodes are drained"),
    ("HorizontalPodAutoscaler", "", "scales on CPU (off in demo)"),
    ("MutatingWebhookConfiguration", "", "makes the API server send new pods to istiod's /inject (stage 13)"),
    ("ValidatingWebhookConfiguration", "", "makes the API server send Istio config to /validate (stage 14)"),
)


def why(obj: dict) -> str:
    for kind, prefix, reason in WHY:
        if obj["kind"] == kind and obj["metadata"]["name"].startswith(prefix):
            return reason
    return ""


def _show(value: object) -> str:
    return "-" if value is None else short(value)


def flatten(value: object, prefix: str = "") -> dict[str, object]:
    """Like ``views.flatten``, but a list of named entries (gateways, env) is walked with
    ``[name:...]`` selectors, the path syntax ``--set`` takes."""
    if isinstance(value, dict) and value:
        out: dict[str, object] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value and all(isinstance(e, dict) and "name" in e for e in value):
        out = {}
        for entry in value:
            rest = {k: v for k, v in entry.items() if k != "name"}
            out.update(flatten(rest, f"{prefix}[name:{entry['name']}]"))
        return out
    return {prefix: value}


def profiles_side_by_side(names: Sequence[str], prefixes: Sequence[str] = ("components", "meshConfig", "values")) -> TextView:
    """One row per spec path whose value differs between the profiles, one column per profile."""
    flat = {name: flatten(iopmod.profile_iop(name)["spec"]) for name in names}
    paths = sorted({p for f in flat.values() for p in f if p.split(".")[0].split("[")[0] in prefixes})
    rows = [(p, *(_show(flat[n].get(p)) for n in names)) for p in paths
            if len({repr(flat[n].get(p)) for n in names}) > 1]
    return table(("spec path", *names), rows)


def components_by_profile(names: Sequence[str]) -> TextView:
    """Which components each profile renders, and how many objects."""
    rows = []
    for name in names:
        out = render.render(iopmod.generate(profile=name))
        rows.append((name, *(len(out.get(c, [])) or "-" for c in render.COMPONENT_ORDER)))
    return table(("profile", *render.COMPONENT_ORDER), rows)


def install_table(rendered: dict[str, list[dict]]) -> TextView:
    """Every object an install creates, in apply order, with why it is there (CRDs on one line)."""
    rows = []
    for component in render.COMPONENT_ORDER:
        objects = render.sort_for_apply(rendered.get(component, []))
        crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
        for obj in objects:
            if obj["kind"] == "CustomResourceDefinition":
                if obj is crds[0]:
                    rows.append((component, "CustomResourceDefinition", f"({len(crds)} Istio kinds)", why(obj)))
                continue
            meta = obj["metadata"]
            name = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
            rows.append((component, obj["kind"], name, why(obj)))
    return table(("component", "kind", "name", "why"), rows)


def outcomes_table(outcomes: Iterable) -> TextView:
    rows = []
    for o in outcomes:
        r = o.result
        rows.append((f"{o.key[0]}/{o.key[1]}", o.status, len(r.created) if r else "-", len(r.updated) if r else "-",
                     len(r.deleted) if r else "-", o.message[:90] if o.message else ""))
    return table(("IstioOperator", "status", "created", "updated", "deleted", "message"), rows)


def written_table(events: Iterable, kinds: Sequence[str] | None = None) -> TextView:
    """The writes a client saw, in order: type, kind, name."""
    rows = []
    for event in events:
        obj = event.object
        if kinds and obj["kind"] not in kinds:
            continue
        meta = obj["metadata"]
        name = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
        rows.append((event.type, obj["kind"], name))
    return table(("event", "kind", "name"), rows)
